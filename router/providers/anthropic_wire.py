"""Anthropic Messages <-> thrifty's OpenAI-shaped types, both ways.

Both directions exist so the fake upstream can accept Anthropic requests and answer in Anthropic's
shapes with the same code paths tests assert on, and so round trips (tools, system prompts, usage,
stop reasons) are testable without a network.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from router.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    FunctionDef,
    ImagePart,
    ImageURL,
    Message,
    PromptTokensDetails,
    ResponseMessage,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    text_of,
)

STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}
FINISH_TO_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
DEFAULT_MAX_TOKENS = 4096
# JSON mode has no Anthropic switch: it is emulated by forcing a tool whose input schema is the format's
# and reading that tool's input back as the answer's text. The name is reserved (a caller's tool of the
# same name is refused) so the answer can be recognised without state.
JSON_TOOL = "thrifty_json_answer"
_json = msgspec.json.Encoder()


def _args(value: Any) -> str:
    return _json.encode(value).decode()


def _parse_args(arguments: str) -> Any:
    try:
        return msgspec.json.decode(arguments) if arguments else {}
    except msgspec.DecodeError:
        return {"_raw": arguments}


# ------------------------------------------------------------------------------------------ requests
def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0] or "image/png"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_blocks(message: Message) -> str | list[dict[str, Any]]:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image_block(part.image_url.url))
    return blocks


def _assistant_blocks(message: Message) -> str | list[dict[str, Any]]:
    text = text_of(message.content)
    if not message.tool_calls:
        return text
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.function.name, "input": _parse_args(call.function.arguments)}
        )
    return blocks


def _append(messages: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Anthropic wants alternating roles: merge a turn into the previous one of the same role."""
    if messages and messages[-1]["role"] == role:
        prev = messages[-1]["content"]
        prev_blocks = [{"type": "text", "text": prev}] if isinstance(prev, str) else prev
        new_blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        messages[-1]["content"] = prev_blocks + new_blocks
    else:
        messages.append({"role": role, "content": content})


def _tool_choice(choice: str | dict[str, Any] | None, parallel: bool | None) -> dict[str, Any] | None:
    if choice is None and parallel is None:
        return None
    if isinstance(choice, dict):
        out: dict[str, Any] = {"type": "tool", "name": choice.get("function", {}).get("name", "")}
    else:
        out = {"type": {"required": "any", "none": "none"}.get(choice or "auto", "auto")}
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


# reasoning_effort -> extended thinking's token budget; "minimal" and "none" leave thinking off.
THINKING_BUDGET = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 24576, "max": 28672}
MIN_THINKING_BUDGET = 1024  # Anthropic's floor


def thinking(request: ChatRequest) -> tuple[dict[str, Any] | None, int]:
    """Extended thinking for ``reasoning_effort``, and the ``max_tokens`` to send with it. OpenAI's output
    cap includes reasoning tokens, so a caller's cap stays the cap and the budget fits under it."""
    cap = request.max_completion_tokens or request.max_tokens
    budget = THINKING_BUDGET.get(request.reasoning_effort or "")
    if budget is None:
        return None, cap or DEFAULT_MAX_TOKENS
    if cap is None:
        return {"type": "enabled", "budget_tokens": budget}, budget + DEFAULT_MAX_TOKENS
    return {"type": "enabled", "budget_tokens": max(MIN_THINKING_BUDGET, min(budget, cap - 1))}, cap


def json_answer_tool(request: ChatRequest) -> dict[str, Any] | None:
    """The forced tool that emulates ``response_format`` json_object / json_schema, or None."""
    rf = request.response_format
    if rf is None or rf.type == "text":
        return None
    schema: dict[str, Any] = {"type": "object"}
    description = "Give the complete answer as this tool's input: a JSON object."
    if rf.type == "json_schema" and rf.json_schema:
        schema = rf.json_schema.get("schema") or schema
        if rf.json_schema.get("description"):
            description += " " + str(rf.json_schema["description"])
    return {"name": JSON_TOOL, "description": description, "input_schema": schema}


def to_anthropic_request(request: ChatRequest, model: str) -> dict[str, Any]:
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role in ("system", "developer"):
            system.append(text_of(m.content))
        elif m.role == "assistant":
            _append(messages, "assistant", _assistant_blocks(m))
        elif m.role in ("tool", "function"):
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": text_of(m.content)}
            _append(messages, "user", [block])
        else:
            _append(messages, "user", _user_blocks(m))
    think, max_tokens = thinking(request)
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if think is not None:
        body["thinking"] = think
    if system:
        body["system"] = "\n\n".join(system)
    for name in ("temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    if request.stop is not None:
        body["stop_sequences"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    if request.tools:
        body["tools"] = [
            {
                "name": t.function.name,
                **({"description": t.function.description} if t.function.description else {}),
                "input_schema": t.function.parameters or {"type": "object", "properties": {}},
            }
            for t in request.tools
        ]
    tool_choice = _tool_choice(request.tool_choice, request.parallel_tool_calls)
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    json_tool = json_answer_tool(request)
    if json_tool is not None:
        body["tools"] = [*body.get("tools", ()), json_tool]
        body["tool_choice"] = {"type": "tool", "name": JSON_TOOL}
    user = request.safety_identifier or request.user
    if user:
        body["metadata"] = {"user_id": user}
    if request.stream:
        body["stream"] = True
    return body


def _openai_content(blocks: str | list[dict[str, Any]]) -> tuple[str | list[Any], list[ToolCall], list[Message]]:
    """User/assistant blocks -> (content, tool calls, tool-result messages)."""
    if isinstance(blocks, str):
        return blocks, [], []
    parts: list[Any] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for b in blocks:
        kind = b.get("type")
        if kind == "text":
            parts.append(TextPart(text=b["text"]))
        elif kind == "image":
            src = b["source"]
            url = src["url"] if src["type"] == "url" else f"data:{src['media_type']};base64,{src['data']}"
            parts.append(ImagePart(image_url=ImageURL(url=url)))
        elif kind == "tool_use":
            calls.append(ToolCall(id=b["id"], function=FunctionCall(name=b["name"], arguments=_args(b["input"]))))
        elif kind == "tool_result":
            content = b.get("content", "")
            text = content if isinstance(content, str) else "\n".join(c.get("text", "") for c in content)
            results.append(Message(role="tool", tool_call_id=b["tool_use_id"], content=text))
    if all(isinstance(p, TextPart) for p in parts):
        return "\n".join(p.text for p in parts), calls, results
    return parts, calls, results


def from_anthropic_request(body: dict[str, Any]) -> ChatRequest:
    messages: list[Message] = []
    system = body.get("system")
    if system:
        text = system if isinstance(system, str) else "\n".join(b.get("text", "") for b in system)
        messages.append(Message(role="system", content=text))
    for m in body.get("messages", []):
        content, calls, results = _openai_content(m["content"])
        messages.extend(results)
        if m["role"] == "assistant":
            messages.append(Message(role="assistant", content=content or None, tool_calls=calls or None))
        elif content or not results:
            messages.append(Message(role="user", content=content))
    tools = [
        Tool(function=FunctionDef(name=t["name"], description=t.get("description"), parameters=t.get("input_schema")))
        for t in body.get("tools", [])
    ] or None
    stop = body.get("stop_sequences")
    return ChatRequest(
        messages=messages,
        model=body.get("model", "auto"),
        max_tokens=body.get("max_tokens"),
        temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        stop=stop,
        tools=tools,
        stream=body.get("stream") or None,
    )


# ------------------------------------------------------------------------------------------ responses
def usage_from_anthropic(u: dict[str, Any]) -> Usage:
    # Anthropic's input_tokens exclude cache reads and writes; OpenAI's prompt_tokens include them.
    cached = u.get("cache_read_input_tokens") or 0
    written = u.get("cache_creation_input_tokens") or 0
    prompt = (u.get("input_tokens") or 0) + cached + written
    completion = u.get("output_tokens") or 0
    details = PromptTokensDetails(cached_tokens=cached) if cached else None
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 prompt_tokens_details=details)


def usage_to_anthropic(u: Usage | None) -> dict[str, int]:
    if u is None:
        return {"input_tokens": 0, "output_tokens": 0}
    cached = u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else 0
    out = {"input_tokens": u.prompt_tokens - cached, "output_tokens": u.completion_tokens}
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def from_anthropic_response(body: dict[str, Any]) -> ChatResponse:
    texts: list[str] = []
    calls: list[ToolCall] = []
    json_answer: str | None = None
    for block in body["content"]:
        if block.get("type") == "text":
            texts.append(block["text"])
        elif block.get("type") == "tool_use" and block["name"] == JSON_TOOL:
            json_answer = _args(block["input"])  # emulated JSON mode: the tool's input IS the answer
        elif block.get("type") == "tool_use":
            calls.append(ToolCall(id=block["id"], function=FunctionCall(name=block["name"], arguments=_args(block["input"]))))
    if json_answer is not None:
        texts = [json_answer]  # any preamble text would make the answer invalid JSON
    message = ResponseMessage(content="".join(texts) if texts or not calls else None, tool_calls=calls or None)
    finish = STOP_TO_FINISH.get(body.get("stop_reason") or "", "stop")
    if json_answer is not None and not calls and finish == "tool_calls":
        finish = "stop"
    return ChatResponse(
        id=body["id"], model=body["model"], choices=[Choice(index=0, message=message, finish_reason=finish)],
        usage=usage_from_anthropic(body.get("usage") or {}),
    )


def to_anthropic_response(response: ChatResponse) -> dict[str, Any]:
    choice = response.choices[0]
    blocks: list[dict[str, Any]] = []
    if choice.message.content:
        blocks.append({"type": "text", "text": choice.message.content})
    for call in choice.message.tool_calls or []:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name,
                       "input": _parse_args(call.function.arguments)})
    return {
        "id": response.id, "type": "message", "role": "assistant", "model": response.model, "content": blocks,
        "stop_reason": FINISH_TO_STOP.get(choice.finish_reason or "stop", "end_turn"), "stop_sequence": None,
        "usage": usage_to_anthropic(response.usage),
    }


class StreamTranslator:
    """Anthropic stream events -> ChatChunks. ``done`` turns true on ``message_stop``."""

    __slots__ = ("_blocks", "_created", "_id", "_input_usage", "_json_block", "_model", "_tools", "done")

    def __init__(self) -> None:
        self._created = int(time.time())  # every chunk of one answer carries the same timestamp
        self._id = ""
        self._model = ""
        self._input_usage: dict[str, Any] = {}
        self._blocks: dict[int, int] = {}  # content block index -> tool call index
        self._tools = 0
        self._json_block: int | None = None  # the block of the emulated-JSON-mode tool: its input is text
        self.done = False

    def _chunk(self, delta: Delta, finish: str | None = None) -> ChatChunk:
        return ChatChunk(id=self._id, model=self._model, created=self._created,
                         choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)])

    def feed(self, event: dict[str, Any]) -> ChatChunk | None:
        kind = event.get("type")
        if kind == "message_start":
            msg = event["message"]
            self._id, self._model = msg["id"], msg["model"]
            self._input_usage = dict(msg.get("usage") or {})
            return self._chunk(Delta(role="assistant", content=""))
        if kind == "content_block_start":
            block = event["content_block"]
            if block.get("type") == "tool_use" and block.get("name") == JSON_TOOL:
                self._json_block = event["index"]
                return None
            if block.get("type") == "tool_use":
                index = self._blocks[event["index"]] = self._tools
                self._tools += 1
                call = ToolCallDelta(index=index, id=block["id"], type="function",
                                     function=FunctionCallDelta(name=block["name"], arguments=""))
                return self._chunk(Delta(tool_calls=[call]))
            text = block.get("text")
            return self._chunk(Delta(content=text)) if text else None
        if kind == "content_block_delta":
            delta = event["delta"]
            if delta.get("type") == "text_delta":
                return self._chunk(Delta(content=delta["text"]))
            if delta.get("type") == "input_json_delta" and event["index"] == self._json_block:
                return self._chunk(Delta(content=delta["partial_json"])) if delta["partial_json"] else None
            if delta.get("type") == "input_json_delta":
                call = ToolCallDelta(index=self._blocks.get(event["index"], 0),
                                     function=FunctionCallDelta(arguments=delta["partial_json"]))
                return self._chunk(Delta(tool_calls=[call]))
            return None
        if kind == "message_delta":
            usage = dict(self._input_usage)
            usage.update(event.get("usage") or {})
            self._input_usage = usage
            stop = (event.get("delta") or {}).get("stop_reason")
            finish = STOP_TO_FINISH.get(stop or "", "stop")
            if finish == "tool_calls" and self._json_block is not None and not self._tools:
                finish = "stop"  # the forced JSON tool answered: to the caller that is a plain answer
            return self._chunk(Delta(), finish)
        if kind == "message_stop":
            self.done = True
            return ChatChunk(id=self._id, model=self._model, created=self._created, choices=[],
                             usage=usage_from_anthropic(self._input_usage))
        return None  # ping, content_block_stop, unknown future events


def to_anthropic_events(response: ChatResponse, pieces: list[str]) -> list[dict[str, Any]]:
    """A full response as the Anthropic event sequence (the fake upstream's streaming renderer)."""
    choice = response.choices[0]
    usage = usage_to_anthropic(response.usage)
    start_usage = {k: v for k, v in usage.items() if k != "output_tokens"} | {"output_tokens": 1}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": {
        "id": response.id, "type": "message", "role": "assistant", "model": response.model, "content": [],
        "stop_reason": None, "usage": start_usage}}]
    index = 0
    if pieces:
        events.append({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        events.extend({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}} for p in pieces)
        events.append({"type": "content_block_stop", "index": 0})
        index = 1
    for call in choice.message.tool_calls or []:
        events.append({"type": "content_block_start", "index": index,
                       "content_block": {"type": "tool_use", "id": call.id, "name": call.function.name, "input": {}}})
        events.append({"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": call.function.arguments}})
        events.append({"type": "content_block_stop", "index": index})
        index += 1
    events.append({"type": "message_delta", "delta": {"stop_reason": FINISH_TO_STOP.get(choice.finish_reason or "stop", "end_turn"),
                   "stop_sequence": None}, "usage": {"output_tokens": usage["output_tokens"]}})
    events.append({"type": "message_stop"})
    return events
