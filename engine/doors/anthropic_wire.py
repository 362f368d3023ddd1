"""The Anthropic Messages request, typed, and its translation into thrifty's one ``ChatRequest``.

This is the mirror image of ``router.providers.anthropic_wire`` (which turns a ``ChatRequest`` into an
Anthropic body for an Anthropic upstream). Requests are Structs with ``forbid_unknown_fields``: a field
thrifty cannot carry to every provider is a 400 that names it, never silently dropped. ``cache_control``
(and any other key inside a content block) is accepted and ignored: it is a hint to Anthropic's own prompt cache, it does not change the answer.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from engine.errors import RequestError
from models.tokens import estimate_messages
from router.types import (
    ChatRequest,
    FunctionCall,
    FunctionDef,
    ImagePart,
    ImageURL,
    Message,
    StreamOptions,
    TextPart,
    ThriftyOptions,
    Tool,
    ToolCall,
)

_json = msgspec.json.Encoder()


class _Block(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Content blocks pass unknown keys: clients echo answers back whole (``citations``, ``caller``,
    ``toolset_name``, ...), metadata of the answer rather than part of the prompt."""

    cache_control: dict[str, Any] | None = None


class TextBlock(_Block, tag="text"):
    text: str = ""
    citations: list[dict[str, Any]] | None = None


class ImageSource(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ImageBlock(_Block, tag="image"):
    source: ImageSource | None = None


class ToolUseBlock(_Block, tag="tool_use"):
    id: str = ""
    name: str = ""
    input: dict[str, Any] = {}


class ToolResultBlock(_Block, tag="tool_result"):
    tool_use_id: str = ""
    content: str | list[TextBlock | ImageBlock] = ""
    is_error: bool | None = None


class ThinkingBlock(_Block, tag="thinking"):
    """A previous turn's reasoning, sent back by agents such as Claude Code: context, not an instruction."""

    thinking: str = ""
    signature: str = ""


class RedactedThinkingBlock(_Block, tag="redacted_thinking"):
    data: str = ""


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


class AMessage(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class ATool(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = None


class AToolChoice(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class AMetadata(msgspec.Struct, forbid_unknown_fields=True):
    user_id: str | None = None


class Thinking(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class MessagesRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    messages: list[AMessage]
    max_tokens: int
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    tools: list[ATool] | None = None
    tool_choice: AToolChoice | None = None
    metadata: AMetadata | None = None
    thinking: Thinking | None = None
    # Anthropic-side resource controls (Claude Code sends them): accepted, not applied on other providers,
    # and named in the answer's ``x-thrifty-ignored-fields`` header (``ignored_fields``).
    context_management: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None
    stream: bool | None = None
    thrifty: ThriftyOptions | None = None


class CountTokensRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str
    messages: list[AMessage]
    system: str | list[TextBlock] | None = None
    tools: list[ATool] | None = None
    tool_choice: AToolChoice | None = None
    thinking: Thinking | None = None
    context_management: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None


messages_decoder = msgspec.json.Decoder(MessagesRequest)
count_decoder = msgspec.json.Decoder(CountTokensRequest)
_INCLUDE_USAGE = StreamOptions(include_usage=True)


# ------------------------------------------------------------------------------------------ translation
def _system_text(system: str | list[TextBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n".join(b.text for b in system)


def _image_url(block: ImageBlock, where: str) -> str:
    src = block.source
    if src is None:
        raise RequestError(f"{where}.source: required for an image block", param=f"{where}.source")
    if src.type == "url":
        if not src.url:
            raise RequestError(f"{where}.source.url: required for a url image", param=f"{where}.source.url")
        return src.url
    if not src.data or not src.media_type:
        raise RequestError(f"{where}.source: a base64 image needs media_type and data", param=f"{where}.source")
    return f"data:{src.media_type};base64,{src.data}"


def _tool_result(block: ToolResultBlock, where: str) -> Message:
    content = block.content
    if isinstance(content, str):
        text = content
    else:
        if any(isinstance(b, ImageBlock) for b in content):
            # OpenAI-format tool messages carry text only; an image would be dropped on most routes.
            raise RequestError(f"{where}.content: images inside a tool_result are not supported; send the image "
                               "in a user text/image block instead", param=f"{where}.content")
        text = "\n".join(b.text for b in content if isinstance(b, TextBlock))
    if block.is_error:
        text = f"Error: {text}"  # OpenAI has no is_error flag: the model still needs to know the call failed
    return Message(role="tool", tool_call_id=block.tool_use_id, content=text)


def _user(message: AMessage, where: str) -> list[Message]:
    if isinstance(message.content, str):
        return [Message(role="user", content=message.content)]
    out: list[Message] = []
    parts: list[TextPart | ImagePart] = []
    for i, b in enumerate(message.content):
        if isinstance(b, ToolResultBlock):
            out.append(_tool_result(b, f"{where}.content[{i}]"))
        elif isinstance(b, TextBlock):
            parts.append(TextPart(text=b.text))
        elif isinstance(b, ImageBlock):
            parts.append(ImagePart(image_url=ImageURL(url=_image_url(b, f"{where}.content[{i}]"))))
        else:
            raise RequestError(f"{where}.content[{i}]: a {b.__struct_config__.tag} block is not allowed in a user "
                               "message", param=f"{where}.content")
    if parts:
        if all(isinstance(p, TextPart) for p in parts):
            out.append(Message(role="user", content="\n".join(p.text for p in parts)))  # type: ignore[union-attr]
        else:
            out.append(Message(role="user", content=list(parts)))
    return out


def _assistant(message: AMessage, where: str) -> Message:
    if isinstance(message.content, str):
        return Message(role="assistant", content=message.content)
    texts: list[str] = []
    calls: list[ToolCall] = []
    for i, b in enumerate(message.content):
        if isinstance(b, TextBlock):
            texts.append(b.text)
        elif isinstance(b, ToolUseBlock):
            calls.append(ToolCall(id=b.id, function=FunctionCall(name=b.name, arguments=_json.encode(b.input).decode())))
        elif isinstance(b, ThinkingBlock | RedactedThinkingBlock):
            continue  # earlier reasoning: providers other than Anthropic cannot take it back
        else:
            raise RequestError(f"{where}.content[{i}]: a {b.__struct_config__.tag} block is not allowed in an "
                               "assistant message", param=f"{where}.content")
    return Message(role="assistant", content="".join(texts) or None, tool_calls=calls or None)


def _tool_choice(choice: AToolChoice | None) -> str | dict[str, Any] | None:
    if choice is None:
        return None
    if choice.type == "tool":
        if not choice.name:
            raise RequestError("tool_choice.name: required when tool_choice.type is 'tool'", param="tool_choice")
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def chat_messages(system: str | list[TextBlock] | None, messages: list[AMessage]) -> list[Message]:
    out: list[Message] = []
    text = _system_text(system)
    if text:
        out.append(Message(role="system", content=text))
    for i, m in enumerate(messages):
        if m.role == "user":
            out.extend(_user(m, f"messages[{i}]"))
        else:
            out.append(_assistant(m, f"messages[{i}]"))
    return out


def to_chat_request(req: MessagesRequest) -> ChatRequest:
    if not req.messages:
        raise RequestError("messages: at least one message is required", param="messages")
    if req.max_tokens < 1:
        raise RequestError("max_tokens: must be at least 1", param="max_tokens")
    if req.top_k is not None:
        raise RequestError("top_k: not supported through thrifty (OpenAI-format providers have no top_k); "
                           "use temperature or top_p", param="top_k")
    tools = [Tool(function=FunctionDef(name=t.name, description=t.description, parameters=t.input_schema))
             for t in req.tools or ()] or None
    parallel = False if req.tool_choice and req.tool_choice.disable_parallel_tool_use and tools else None
    return ChatRequest(
        messages=chat_messages(req.system, req.messages),
        model=req.model,
        # max_completion_tokens: OpenAI's current name (its reasoning models refuse max_tokens); every
        # provider translation reads it.
        max_completion_tokens=req.max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        stop=list(req.stop_sequences) if req.stop_sequences else None,
        tools=tools,
        tool_choice=_tool_choice(req.tool_choice) if tools else None,
        parallel_tool_calls=parallel,
        user=req.metadata.user_id if req.metadata else None,
        stream=True if req.stream else None,
        stream_options=_INCLUDE_USAGE if req.stream else None,  # usage goes into message_delta
        thrifty=req.thrifty,
    )


def ignored_fields(req: MessagesRequest) -> list[str]:
    """Fields accepted but not applied: extended thinking (answers carry no thinking blocks) and Anthropic's
    own context and output controls. They ask the provider to spend or save its resources; the answer is
    a normal answer without them, so refusing them would only lock out clients such as Claude Code."""
    ignored = []
    if req.thinking is not None and req.thinking.type != "disabled":
        ignored.append("thinking")
    if req.context_management is not None:
        ignored.append("context_management")
    if req.output_config is not None:
        ignored.append("output_config")
    return ignored


def count_tokens(req: CountTokensRequest) -> int:
    """A local estimate of the prompt's input tokens (thrifty's estimator: no upstream call, no cost)."""
    messages = chat_messages(req.system, req.messages)
    texts: list[str] = []
    for m in messages:
        if isinstance(m.content, str):
            texts.append(m.content)
        elif m.content:
            texts.append("\n".join(p.text for p in m.content if isinstance(p, TextPart)))
        texts.extend(c.function.name + c.function.arguments for c in m.tool_calls or ())
    texts.extend(_json.encode(t).decode() for t in req.tools or ())
    return estimate_messages(texts)
