"""Snowflake Cortex REST ``inference:complete`` <-> thrifty's OpenAI-shaped types, both ways.

Wire format (Snowflake's Cortex REST API reference): request ``model``, ``messages`` (``role``,
``content`` or ``content_list`` with ``tool_use`` / ``tool_results`` items), ``temperature``,
``top_p``, ``max_tokens``, ``tools`` as ``{"tool_spec": {"type": "generic", "name", "description",
"input_schema"}}``, ``tool_choice``, ``response_format`` ``{"type": "json", "schema"}`` and ``stream``
(on by default). The answer is an SSE stream of OpenAI-like chunks ``choices[].delta`` carrying
``content`` (and ``text``) or, for tool calls, ``type: "tool_use"`` with ``tool_use_id`` and ``name`` in
a call's first delta and ``input`` JSON fragments after it (an older shape puts these in ``content_list``
without ``type``); ``usage`` rides along. There is no ``[DONE]``: the body just ends.

The fake upstream renders Cortex streams from recordings (``bench/fake_wire.py``), not from this module.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec

from router.types import (
    ChatChunk,
    ChatRequest,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    FunctionDef,
    Message,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
    text_of,
)

_json = msgspec.json.Encoder()


def _parse(arguments: str) -> Any:
    try:
        return msgspec.json.decode(arguments) if arguments else {}
    except msgspec.DecodeError:
        return {"_raw": arguments}


def _tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, dict):
        return {"type": "tool", "name": [choice.get("function", {}).get("name", "")]}
    return {"type": {"required": "required", "none": "none"}.get(choice, "auto")}


def to_cortex_request(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    names: dict[str, str] = {}  # tool_call_id -> function name: Cortex tool results carry the name
    messages: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role == "assistant" and m.tool_calls:
            items = []
            for c in m.tool_calls:
                names[c.id] = c.function.name
                items.append({"type": "tool_use", "tool_use": {"tool_use_id": c.id, "name": c.function.name,
                                                                "input": _parse(c.function.arguments)}})
            messages.append({"role": "assistant", "content": text_of(m.content), "content_list": items})
        elif m.role in ("tool", "function"):
            call_id = m.tool_call_id or ""
            result = {"tool_use_id": call_id, "name": names.get(call_id, m.name or ""),
                      "content": [{"type": "text", "text": text_of(m.content)}]}
            messages.append({"role": "user", "content_list": [{"type": "tool_results", "tool_results": result}]})
        else:
            role = "system" if m.role == "developer" else m.role
            messages.append({"role": role, "content": text_of(m.content)})
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
    for name in ("temperature", "top_p"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    max_tokens = request.max_completion_tokens or request.max_tokens
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if request.tools:
        body["tools"] = [{"tool_spec": {"type": "generic", "name": t.function.name,
                                        **({"description": t.function.description} if t.function.description else {}),
                                        "input_schema": t.function.parameters or {"type": "object", "properties": {}}}}
                         for t in request.tools]
    tool_choice = _tool_choice(request.tool_choice)
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    rf = request.response_format
    if rf is not None and rf.type == "json_schema" and rf.json_schema:
        body["response_format"] = {"type": "json", "schema": rf.json_schema.get("schema", rf.json_schema)}
    elif rf is not None and rf.type == "json_object":  # any object: the loosest schema Cortex accepts
        body["response_format"] = {"type": "json", "schema": {"type": "object"}}
    return body


def from_cortex_request(body: dict[str, Any]) -> ChatRequest:
    messages: list[Message] = []
    for m in body.get("messages", []):
        items = m.get("content_list") or []
        calls = [ToolCall(id=i["tool_use"]["tool_use_id"], function=FunctionCall(
            name=i["tool_use"]["name"], arguments=_json.encode(i["tool_use"]["input"]).decode()))
            for i in items if i.get("type") == "tool_use"]
        results = [i["tool_results"] for i in items if i.get("type") == "tool_results"]
        if results:
            messages.extend(Message(role="tool", tool_call_id=r["tool_use_id"], name=r.get("name") or None,
                                    content="\n".join(c.get("text", "") for c in r.get("content", [])))
                            for r in results)
        elif calls:
            messages.append(Message(role="assistant", content=m.get("content") or None, tool_calls=calls))
        else:
            messages.append(Message(role=m.get("role", "user"), content=m.get("content", "")))
    tools = [Tool(function=FunctionDef(name=t["tool_spec"]["name"], description=t["tool_spec"].get("description"),
                                       parameters=t["tool_spec"].get("input_schema")))
             for t in body.get("tools", [])] or None
    rf = body.get("response_format")
    return ChatRequest(
        messages=messages, model=body.get("model", "auto"), temperature=body.get("temperature"),
        top_p=body.get("top_p"), max_tokens=body.get("max_tokens"), tools=tools,
        response_format=ResponseFormat(type="json_schema", json_schema={"schema": rf["schema"]}) if rf else None,
        stream=body.get("stream", True),
    )


def usage_from_cortex(u: dict[str, Any] | None) -> Usage | None:
    if not u:
        return None
    prompt = int(u.get("prompt_tokens") or 0)
    completion = int(u.get("completion_tokens") or 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion,
                 total_tokens=int(u.get("total_tokens") or prompt + completion))


class CortexStreamTranslator:
    """Cortex SSE chunks -> ChatChunks; tool-call ids get OpenAI-style indexes."""

    __slots__ = ("_calls", "_role_sent", "created", "finish", "id", "model", "usage")

    def __init__(self) -> None:
        self.created = int(time.time())  # every chunk of one answer carries the same timestamp
        self._calls: dict[str, int] = {}
        self.id = ""
        self.model = ""
        self.usage: Usage | None = None
        self.finish: str | None = None
        self._role_sent = False  # OpenAI's first chunk names the role; Cortex's never does

    def _tool_delta(self, item: dict[str, Any]) -> ToolCallDelta | None:
        """Like OpenAI, Cortex names a call (``tool_use_id``, ``name``) only in its first delta; later
        ones carry just a piece of ``input``, which belongs to the call started last."""
        call_id = item.get("tool_use_id")
        arguments = item.get("input") or ""
        if not isinstance(arguments, str):  # an already parsed object: the whole input at once
            arguments = _json.encode(arguments).decode()
        if call_id and call_id not in self._calls:
            self._calls[call_id] = len(self._calls)
            return ToolCallDelta(index=self._calls[call_id], id=call_id, type="function",
                                 function=FunctionCallDelta(name=item.get("name") or "", arguments=arguments))
        if not self._calls:
            raise KeyError("tool_use_id")  # input for a call that was never started
        if not arguments:
            return None
        index = self._calls[call_id] if call_id else len(self._calls) - 1
        return ToolCallDelta(index=index, function=FunctionCallDelta(arguments=arguments))

    def _tool_items(self, delta: dict[str, Any]) -> list[dict[str, Any]]:
        """The tool-use parts of a delta: the delta itself (``type: tool_use``) or, in the older shape
        without ``type``, the ``content_list`` items that carry a tool_use_id or an input."""
        if delta.get("type") == "tool_use":
            return [delta]
        if delta.get("type") is not None:
            return []
        items = [i.get("tool_use", i) for i in delta.get("content_list") or () if isinstance(i, dict)]
        return [i for i in items if "tool_use_id" in i or "input" in i]

    def feed(self, data: dict[str, Any]) -> ChatChunk | None:
        self.id = data.get("id") or self.id
        self.model = data.get("model") or self.model
        usage = usage_from_cortex(data.get("usage"))
        if usage is not None:
            self.usage = usage  # cumulative when repeated: keep the last
        choices = data.get("choices") or []
        if not choices:
            return None
        choice = choices[0]
        delta = choice.get("delta") or choice.get("message") or {}
        text: str | None = None
        calls: list[ToolCallDelta] = []
        tool_items = self._tool_items(delta)
        if tool_items:
            calls = [c for c in map(self._tool_delta, tool_items) if c is not None]
        else:
            text = delta.get("content") if delta.get("content") is not None else delta.get("text")
        finish = choice.get("finish_reason")
        if finish:
            self.finish = finish
        if not text and not calls and not finish:
            return None
        role: Literal["assistant"] | None = None if self._role_sent else "assistant"
        self._role_sent = True
        return ChatChunk(id=self.id, model=self.model, created=self.created, choices=[ChunkChoice(
            index=0, delta=Delta(role=role, content=text or None, tool_calls=calls or None), finish_reason=finish)])

    def closing(self) -> list[ChatChunk]:
        """At a clean end of body: the finish chunk Cortex may not send, then usage."""
        out: list[ChatChunk] = []
        if self.finish is None:
            finish = "tool_calls" if self._calls else "stop"
            out.append(ChatChunk(id=self.id, model=self.model, created=self.created,
                                 choices=[ChunkChoice(index=0, delta=Delta(role=None if self._role_sent else "assistant"),
                                                      finish_reason=finish)]))
        if self.usage is not None:
            out.append(ChatChunk(id=self.id, model=self.model, created=self.created, choices=[], usage=self.usage))
        return out
