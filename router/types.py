"""OpenAI-shaped wire types shared by the router, the providers and the engine.

They live in ``router`` (not ``engine``) because the arrows of the house point one way: the router must
dispatch requests and read responses, and may import only ``models``. ``engine.types`` re-exports them as
the public API. ``cache`` never imports them: scoping reads fields by name from an explicit list.

Requests forbid unknown fields: a field thrifty does not know could change the answer, and silently
dropping it (or leaving it out of the cache key) would be worse than a clear 400 that names it.
"""

from __future__ import annotations

import time
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
# Fields the OpenAI spec marks required must be encoded even when equal to their default, but
# ``omit_defaults`` (which keeps optional ``None`` fields off the wire) drops any value equal to its
# default. A ``default_factory`` that is not an empty collection is never omitted: these helpers
# give the required fields a default (so decoding stays lenient) that is always written.
def _null() -> None:
    return None


def _function() -> Literal["function"]:
    return "function"


def _assistant() -> Literal["assistant"]:
    return "assistant"


def _now() -> int:
    return int(time.time())


def _completion() -> Literal["chat.completion"]:
    return "chat.completion"


def _completion_chunk() -> Literal["chat.completion.chunk"]:
    return "chat.completion.chunk"


class FunctionCall(msgspec.Struct, omit_defaults=True):
    name: str
    arguments: str = msgspec.field(default_factory=str)


class ToolCall(msgspec.Struct, omit_defaults=True):
    id: str
    function: FunctionCall
    type: Literal["function"] = msgspec.field(default_factory=_function)


class FunctionDef(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    function: FunctionDef
    type: Literal["function"] = msgspec.field(default_factory=_function)


class Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    # What an earlier answer carried, echoed back by clients that append ``choices[0].message`` to the
    # history as is (the openai SDK does): accepted and passed to OpenAI-format upstreams.
    annotations: list[dict[str, Any]] | None = None
    audio: dict[str, Any] | None = None
    function_call: dict[str, Any] | None = None


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
    # Per-request dispatch limits, in seconds; clamped to the operator's (never lengthened).
    ttft_s: float | None = None  # a stream's first content token, per attempt
    stall_s: float | None = None  # longest silence between two stream chunks
    deadline_s: float | None = None  # the whole request, every retry and fallback included
    shadow: bool | None = None  # serve fresh and record what the cache would have served (engine/shadow.py)


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
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    # Deprecated function calling: known so that the 400 can say what to use instead (router.providers.fields).
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
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
    prompt_tokens: int = msgspec.field(default_factory=int)
    completion_tokens: int = msgspec.field(default_factory=int)
    total_tokens: int = msgspec.field(default_factory=int)
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


class ResponseMessage(msgspec.Struct, omit_defaults=True):
    """``role``, ``content`` and ``refusal`` are required by the spec (the last two nullable)."""

    role: Literal["assistant"] = msgspec.field(default_factory=_assistant)
    content: str | None = msgspec.field(default_factory=_null)
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = msgspec.field(default_factory=_null)
    annotations: list[dict[str, Any]] | None = None  # e.g. url citations from an OpenAI upstream, kept
    audio: dict[str, Any] | None = None


class Choice(msgspec.Struct, omit_defaults=True):
    index: int
    message: ResponseMessage
    finish_reason: str | None = msgspec.field(default_factory=_null)
    logprobs: dict[str, Any] | None = msgspec.field(default_factory=_null)


class ChatResponse(msgspec.Struct, omit_defaults=True):
    id: str
    model: str
    choices: list[Choice]
    created: int = msgspec.field(default_factory=_now)
    object: Literal["chat.completion"] = msgspec.field(default_factory=_completion)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


class FunctionCallDelta(msgspec.Struct, omit_defaults=True):
    """A piece of a streamed call: OpenAI sends ``name`` only in a call's first chunk."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, omit_defaults=True):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class Delta(msgspec.Struct, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    refusal: str | None = None


class ChunkChoice(msgspec.Struct, omit_defaults=True):
    index: int
    delta: Delta
    finish_reason: str | None = msgspec.field(default_factory=_null)  # required, null until the end
    logprobs: dict[str, Any] | None = None


class ChatChunk(msgspec.Struct, omit_defaults=True):
    id: str
    model: str
    choices: list[ChunkChoice]
    created: int = msgspec.field(default_factory=_now)
    object: Literal["chat.completion.chunk"] = msgspec.field(default_factory=_completion_chunk)
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
