"""The OpenAI Responses request, typed, and its translation into thrifty's one ``ChatRequest``.

``input`` is a string or a list of items: messages (``input_text``/``input_image``/``output_text`` parts),
``function_call`` and ``function_call_output``. Anything thrifty cannot carry to every provider (built-in
tools, ``include``, reasoning items) is a 400 that names the field, never silently dropped.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from engine.doors._common import convert
from engine.errors import RequestError
from router.types import (
    ChatRequest,
    FunctionCall,
    FunctionDef,
    ImagePart,
    ImageURL,
    Message,
    ResponseFormat,
    StreamOptions,
    TextPart,
    ThriftyOptions,
    Tool,
    ToolCall,
)


class _Part(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    pass


class InputText(_Part, tag="input_text"):
    text: str


class InputImage(_Part, tag="input_image"):
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None
    file_id: str | None = None


class OutputText(_Part, tag="output_text"):
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(_Part, tag="refusal"):
    refusal: str


class MessageItem(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText | InputImage | OutputText | Refusal]
    type: Literal["message"] = "message"
    id: str | None = None
    status: str | None = None


class FunctionCallItem(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(msgspec.Struct, forbid_unknown_fields=True):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputText]
    id: str | None = None
    status: str | None = None


class FunctionTool(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: Literal["function"]
    name: str
    parameters: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextFormat(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    effort: str | None = None


class ResponsesRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    input: str | list[dict[str, Any]]
    model: str = "auto"
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    include: list[str] | None = None
    truncation: Literal["disabled"] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    thrifty: ThriftyOptions | None = None


request_decoder = msgspec.json.Decoder(ResponsesRequest)
_INCLUDE_USAGE = StreamOptions(include_usage=True)
_ITEM_TYPES: dict[str, type] = {"message": MessageItem, "function_call": FunctionCallItem,
                                "function_call_output": FunctionCallOutputItem}


def _message(item: MessageItem, where: str) -> Message:
    if isinstance(item.content, str):
        return Message(role=item.role, content=item.content)
    parts: list[TextPart | ImagePart] = []
    for j, p in enumerate(item.content):
        if isinstance(p, InputText | OutputText):
            parts.append(TextPart(text=p.text))
        elif isinstance(p, Refusal):
            parts.append(TextPart(text=p.refusal))
        elif p.file_id is not None or not p.image_url:
            raise RequestError(f"{where}.content[{j}]: input_image needs image_url (file ids are not supported)",
                               param=f"{where}.content")
        else:
            parts.append(ImagePart(image_url=ImageURL(url=p.image_url, detail=p.detail)))
    if item.role == "assistant" or all(isinstance(p, TextPart) for p in parts):
        return Message(role=item.role, content="".join(p.text for p in parts if isinstance(p, TextPart)))
    return Message(role=item.role, content=list(parts))


def chat_messages(instructions: str | None, input: str | list[dict[str, Any]]) -> list[Message]:
    out: list[Message] = [Message(role="system", content=instructions)] if instructions else []
    if isinstance(input, str):
        return [*out, Message(role="user", content=input)]
    for i, raw in enumerate(input):
        where = f"input[{i}]"
        kind = raw.get("type", "message")
        item_type = _ITEM_TYPES.get(kind) if isinstance(kind, str) else None
        if item_type is None:
            raise RequestError(f"{where}.type: {kind!r} is not supported; thrifty takes message, function_call "
                               "and function_call_output items", param=f"{where}.type")
        item = convert(raw, item_type, where)
        if isinstance(item, MessageItem):
            out.append(_message(item, where))
        elif isinstance(item, FunctionCallItem):
            call = ToolCall(id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments))
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and last.tool_calls is not None:
                last.tool_calls.append(call)  # parallel calls of one turn: one assistant message
            elif last is not None and last.role == "assistant" and last.tool_calls is None:
                last.tool_calls = [call]
            else:
                out.append(Message(role="assistant", tool_calls=[call]))
        else:
            output = item.output if isinstance(item.output, str) else "".join(p.text for p in item.output)
            out.append(Message(role="tool", tool_call_id=item.call_id, content=output))
    return out


def _tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or isinstance(choice, str):
        if choice not in (None, "auto", "none", "required"):
            raise RequestError(f"tool_choice: {choice!r} is not one of auto, none, required", param="tool_choice")
        return choice
    if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
        raise RequestError("tool_choice: only {\"type\": \"function\", \"name\": ...} objects are supported",
                           param="tool_choice")
    return {"type": "function", "function": {"name": choice["name"]}}


def _response_format(text: TextConfig | None) -> ResponseFormat | None:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ResponseFormat(type="json_object")
    if not fmt.name or fmt.schema is None:
        raise RequestError("text.format: a json_schema format needs name and schema", param="text.format")
    schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
    if fmt.description is not None:
        schema["description"] = fmt.description
    if fmt.strict is not None:
        schema["strict"] = fmt.strict
    return ResponseFormat(type="json_schema", json_schema=schema)


def _refuse(req: ResponsesRequest) -> None:
    if req.include:
        raise RequestError(f"include: {req.include[0]!r} is not supported through thrifty", param="include")
    if not req.input:
        raise RequestError("input: at least one input item is required", param="input")
    if req.max_output_tokens is not None and req.max_output_tokens < 1:
        raise RequestError("max_output_tokens: must be at least 1", param="max_output_tokens")


def to_chat_request(req: ResponsesRequest, history: list[Message]) -> tuple[ChatRequest, list[Message]]:
    """The internal request, and the conversation to store with its answer (``history`` of the previous
    response, then this input; the instructions apart, as OpenAI does not carry them over)."""
    _refuse(req)
    conversation = [*history, *chat_messages(None, req.input)]
    system = [Message(role="system", content=req.instructions)] if req.instructions else []
    return ChatRequest(
        messages=[*system, *conversation],
        model=req.model,
        max_completion_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        tools=[Tool(function=FunctionDef(name=t.name, description=t.description, parameters=t.parameters,
                                         strict=t.strict)) for t in req.tools] if req.tools else None,
        tool_choice=_tool_choice(req.tool_choice),
        parallel_tool_calls=req.parallel_tool_calls,
        response_format=_response_format(req.text),
        verbosity=req.text.verbosity if req.text else None,
        reasoning_effort=req.reasoning.effort if req.reasoning else None,
        metadata=req.metadata,
        user=req.user,
        safety_identifier=req.safety_identifier,
        prompt_cache_key=req.prompt_cache_key,
        service_tier=req.service_tier,
        stream=True if req.stream else None,
        stream_options=_INCLUDE_USAGE if req.stream else None,  # usage goes into response.completed
        thrifty=req.thrifty,
    ), conversation
