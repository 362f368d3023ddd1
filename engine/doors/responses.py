"""``POST /v1/responses``: the OpenAI Responses API over thrifty's pipeline.

The body decodes into the one ``ChatRequest`` (``responses_wire``); the answer becomes a ``response``
object whose ``output`` holds a message item (``output_text``) and ``function_call`` items, and a stream
becomes the Responses event sequence (response.created ... response.completed), each event numbered by
``sequence_number``. Unless ``store`` is false, the conversation with its answer is stored for
``previous_response_id`` (``response_store``: per tenant, in the cache's store).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from engine.doors._common import ChatDoor, decode_body, json_encode
from engine.doors.response_store import ResponseStore
from engine.doors.responses_wire import ResponsesRequest, request_decoder, to_chat_request
from engine.errors import ThriftyError, translate
from engine.types import Meta
from router.types import ChatChunk, ChatRequest, ChatResponse, FunctionCall, Message, ToolCall, Usage

if TYPE_CHECKING:
    from engine.server import Proxy


def _usage(u: Usage | None) -> dict[str, Any]:
    if u is None:
        u = Usage()
    cached = u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else 0
    reasoning = u.completion_tokens_details.reasoning_tokens if u.completion_tokens_details else 0
    return {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": u.total_tokens or u.prompt_tokens + u.completion_tokens}


def _status(finish: str | None) -> tuple[str, dict[str, str] | None]:
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _response_id(meta: Meta) -> str:
    return f"resp_{meta.request_id}"


def _message_item(rid: str, text: str, status: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"id": f"msg_{rid}", "type": "message", "role": "assistant", "status": status,
            "content": [part] if status == "completed" or text else []}


def _call_item(call: ToolCall, status: str) -> dict[str, Any]:
    return {"id": f"fc_{call.id}", "type": "function_call", "call_id": call.id, "name": call.function.name,
            "arguments": call.function.arguments, "status": status}


class _Shape:
    """The echoed request fields every ``response`` object carries, computed once per request, and how to
    store the answer (``keep``: None when it is not stored)."""

    def __init__(self, req: ResponsesRequest, keep: Callable[[str, Message], None] | None) -> None:
        self.keep = keep
        fmt = req.text.format if req.text and req.text.format else None
        self.echo: dict[str, Any] = {
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "metadata": req.metadata or {}, "parallel_tool_calls": req.parallel_tool_calls is not False,
            "previous_response_id": req.previous_response_id, "store": keep is not None,
            "temperature": req.temperature, "top_p": req.top_p,
            "tool_choice": req.tool_choice or "auto",
            "tools": [json_to_dict(t) for t in req.tools or ()],
            "text": {"format": json_to_dict(fmt) if fmt is not None else {"type": "text"}},
            "truncation": "disabled", "error": None,
        }

    def response(self, meta: Meta, model: str, status: str, output: list[dict[str, Any]], usage: Usage | None,
                 incomplete: dict[str, str] | None = None, created: int | None = None) -> dict[str, Any]:
        return {"id": _response_id(meta), "object": "response", "created_at": created or int(time.time()),
                "status": status, "model": model, "output": output,
                "usage": _usage(usage) if status != "in_progress" else None,
                "incomplete_details": incomplete, **self.echo}


def json_to_dict(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(value)
    return out


class ResponsesDoor(ChatDoor):
    what = "Responses"

    def __init__(self, proxy: Proxy) -> None:
        super().__init__(proxy)
        self.store = ResponseStore(self.engine)

    def decode(self, body: bytes, tenant: str) -> tuple[ChatRequest, _Shape]:
        req: ResponsesRequest = decode_body(body, request_decoder, self.what)
        history = self.store.load(tenant, req.previous_response_id) if req.previous_response_id else []
        chat, conversation = to_chat_request(req, history)
        keep = None
        if req.store is not False and self.store.enabled:
            def keep(response_id: str, answer: Message) -> None:
                self.store.save(tenant, response_id, [*conversation, answer])
        return chat, _Shape(req, keep)

    def encode(self, response: ChatResponse, meta: Meta, state: _Shape) -> bytes:
        choice = response.choices[0]
        status, incomplete = _status(choice.finish_reason)
        output: list[dict[str, Any]] = []
        if choice.message.content or not choice.message.tool_calls:
            output.append(_message_item(meta.request_id, choice.message.content or "", "completed"))
        output += [_call_item(c, "completed") for c in choice.message.tool_calls or ()]
        if state.keep is not None:
            state.keep(_response_id(meta), Message(role="assistant", content=choice.message.content,
                                                   tool_calls=choice.message.tool_calls))
        model = response.model or meta.model or ""
        return json_encode(state.response(meta, model, status, output, response.usage, incomplete))

    def events(self, chunks: AsyncIterator[ChatChunk], meta: Meta, state: _Shape, model: str) -> AsyncIterator[bytes]:
        return _EventWriter(meta, state, model).run(chunks)


class _EventWriter:
    """OpenAI-shaped chunks -> Responses stream events, numbered by ``sequence_number``."""

    def __init__(self, meta: Meta, shape: _Shape, model: str) -> None:
        self.meta, self.shape, self.model = meta, shape, model
        self.seq = 0
        self.created = int(time.time())
        self.output: list[dict[str, Any]] = []  # items in output order (mutated as deltas arrive)
        self.text_at: int | None = None  # output index of the open message item
        self.text: list[str] = []
        self.calls: dict[int, int] = {}  # chunk tool-call index -> output index
        self.finish: str | None = None
        self.usage: Usage | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + json_encode(payload) + b"\n\n"

    def _response(self, status: str, incomplete: dict[str, str] | None = None) -> dict[str, Any]:
        return self.shape.response(self.meta, self.model, status, self.output, self.usage, incomplete, self.created)

    def _close_text(self) -> list[bytes]:
        at = self.text_at
        if at is None:
            return []
        self.text_at = None
        item, text = self.output[at], "".join(self.text)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item["status"], item["content"] = "completed", [part]
        ids = {"item_id": item["id"], "output_index": at}
        return [self._event("response.output_text.done", **ids, content_index=0, text=text, logprobs=[]),
                self._event("response.content_part.done", **ids, content_index=0, part=part),
                self._event("response.output_item.done", output_index=at, item=item)]

    def _text(self, delta: str) -> list[bytes]:
        out: list[bytes] = []
        if self.text_at is None:
            self.text_at = len(self.output)
            item = _message_item(self.meta.request_id, "", "in_progress")
            self.output.append(item)
            ids = {"item_id": item["id"], "output_index": self.text_at}
            out += [self._event("response.output_item.added", output_index=self.text_at, item=dict(item)),
                    self._event("response.content_part.added", **ids, content_index=0,
                                part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})]
        self.text.append(delta)
        item = self.output[self.text_at]
        out.append(self._event("response.output_text.delta", item_id=item["id"], output_index=self.text_at,
                               content_index=0, delta=delta, logprobs=[]))
        return out

    def _call(self, index: int, call_id: str | None, name: str, args: str) -> list[bytes]:
        out: list[bytes] = []
        at = self.calls.get(index)
        if at is None:
            out += self._close_text()
            at = self.calls[index] = len(self.output)
            cid = call_id or f"call_{self.meta.request_id}_{index}"
            item = {"id": f"fc_{cid}", "type": "function_call", "call_id": cid, "name": name, "arguments": "",
                    "status": "in_progress"}
            self.output.append(item)
            out.append(self._event("response.output_item.added", output_index=at, item=dict(item)))
        item = self.output[at]
        if args:
            item["arguments"] += args
            out.append(self._event("response.function_call_arguments.delta", item_id=item["id"], output_index=at,
                                   delta=args))
        return out

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        out: list[bytes] = []
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices[:1]:
            delta = choice.delta
            if delta.content:
                out += self._text(delta.content)
            for c in delta.tool_calls or ():
                fn = c.function
                out += self._call(c.index, c.id, (fn.name or "") if fn else "", (fn.arguments or "") if fn else "")
            if choice.finish_reason:
                self.finish = choice.finish_reason
        return out

    def _finish(self) -> list[bytes]:
        out = self._close_text()
        for at in sorted(self.calls.values()):
            item = self.output[at]
            item["status"] = "completed"
            out += [self._event("response.function_call_arguments.done", item_id=item["id"], output_index=at,
                                name=item["name"], arguments=item["arguments"]),
                    self._event("response.output_item.done", output_index=at, item=item)]
        status, incomplete = _status(self.finish)
        if self.shape.keep is not None:
            calls = [ToolCall(id=self.output[at]["call_id"], function=FunctionCall(
                name=self.output[at]["name"], arguments=self.output[at]["arguments"]))
                for at in sorted(self.calls.values())]
            self.shape.keep(_response_id(self.meta), Message(role="assistant", content="".join(self.text) or None,
                                                             tool_calls=calls or None))
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._event(kind, response=self._response(status, incomplete)))
        return out

    async def run(self, chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[bytes]:
        yield self._event("response.created", response=self._response("in_progress"))
        yield self._event("response.in_progress", response=self._response("in_progress"))
        try:
            async for chunk in chunks:
                for event in self.feed(chunk):
                    yield event
        except Exception as exc:
            err: ThriftyError = translate(exc)
            yield self._event("error", code=err.code or err.type, message=err.message, param=err.param)
            return
        for event in self._finish():
            yield event
        yield b": thrifty " + json_encode({"cost_usd": self.meta.cost_usd, "cost_estimated": self.meta.cost_estimated,
                                           "cache": self.meta.cache}) + b"\n\n"
