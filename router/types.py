"""OpenAI-shaped wire types shared by the router, the providers and the engine.

They live in ``router`` (not ``engine``) because the arrows of the house point one way: the router must
dispatch requests and read responses, and may import only ``models``. ``engine.types`` re-exports them as
the public API. ``cache`` never imports them: scoping reads fields by name from an explicit list.

Requests forbid unknown fields: a field thrifty does not know could change the answer, and silently
dropping it (or leaving it out of the cache key) would be worse than a clear 400 that names it.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
CacheMode = Literal["on", "off", "read-only", "write-only"]
Policy = Literal["quality", "balanced", "cost", "target"]


# ---------------------------------------------------------------------------------------------- content
class ImageURL(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(msgspec.Struct, tag_field="type", tag="text", forbid_unknown_fields=True):
    text: str


class ImagePart(msgspec.Struct, tag_field="type", tag="image_url", forbid_unknown_fields=True):
    image_url: ImageURL


class InputAudio(msgspec.Struct, forbid_unknown_fields=True):
    data: str
    format: str


class AudioPart(msgspec.Struct, tag_field="type", tag="input_audio", forbid_unknown_fields=True):
    input_audio: InputAudio


class FilePart(msgspec.Struct, tag_field="type", tag="file", forbid_unknown_fields=True):
    file: dict[str, Any]


ContentPart = TextPart | ImagePart | AudioPart | FilePart


# ---------------------------------------------------------------------------------------------- tools
class FunctionCall(msgspec.Struct, omit_defaults=True):
    name: str
    arguments: str = ""


class ToolCall(msgspec.Struct, omit_defaults=True):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class FunctionDef(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    function: FunctionDef
    type: Literal["function"] = "function"


class Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None


class ResponseFormat(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class StreamOptions(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ThriftyOptions(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """thrifty's own per-request controls: the ``thrifty`` object of the body (or ``x-thrifty-*`` headers)."""

    cache_mode: CacheMode | None = None
    namespace: str | None = None
    ttl: float | None = None  # seconds
    threshold: float | None = None  # semantic-hit similarity override
    task: str | None = None  # task hint: code, math, reasoning, ...
    policy: Policy | None = None
    quality_target: float | None = None  # with policy "target"
    max_cost_usd: float | None = None  # per-request ceiling on expected cost


class ChatRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """An OpenAI Chat Completions request, plus thrifty's controls."""

    messages: list[Message]
    model: str = "auto"
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: str | None = None
    service_tier: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    thrifty: ThriftyOptions | None = None


# ---------------------------------------------------------------------------------------------- responses
class PromptTokensDetails(msgspec.Struct, omit_defaults=True):
    cached_tokens: int = 0
    audio_tokens: int | None = None


class CompletionTokensDetails(msgspec.Struct, omit_defaults=True):
    reasoning_tokens: int = 0
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(msgspec.Struct, omit_defaults=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class ResponseMessage(msgspec.Struct, omit_defaults=True):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class Choice(msgspec.Struct, omit_defaults=True):
    index: int
    message: ResponseMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatResponse(msgspec.Struct, omit_defaults=True):
    id: str
    model: str
    choices: list[Choice]
    created: int = 0
    object: Literal["chat.completion"] = "chat.completion"
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


class ToolCallDelta(msgspec.Struct, omit_defaults=True):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCall | None = None


class Delta(msgspec.Struct, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    refusal: str | None = None


class ChunkChoice(msgspec.Struct, omit_defaults=True):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatChunk(msgspec.Struct, omit_defaults=True):
    id: str
    model: str
    choices: list[ChunkChoice]
    created: int = 0
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    usage: Usage | None = None
    system_fingerprint: str | None = None


# Created once, reused: msgspec's advice for hot paths.
request_decoder = msgspec.json.Decoder(ChatRequest)
response_decoder = msgspec.json.Decoder(ChatResponse)
chunk_decoder = msgspec.json.Decoder(ChatChunk)
encoder = msgspec.json.Encoder()


def text_of(content: str | list[ContentPart] | None) -> str:
    """The text of a message's content (text parts joined by newlines; images and audio contribute nothing)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p.text for p in content if isinstance(p, TextPart))


def has_images(request: ChatRequest) -> bool:
    return any(
        isinstance(m.content, list) and any(isinstance(p, ImagePart) for p in m.content)
        for m in request.messages
    )
