"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: the Anthropic Messages API, served by any provider.

The body decodes into thrifty's ``ChatRequest`` (``anthropic_wire``), goes through the same pipeline as a
Chat Completions request (cache, router, budgets, ledger, metrics), and the answer, or its chunks, is
encoded back as an Anthropic ``message`` or the Messages event stream. ``x-api-key`` is the virtual key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from engine.doors._common import ChatDoor, JSONBytes, decode_body, json_encode
from engine.doors.anthropic_wire import (
    count_decoder,
    count_tokens,
    ignored_fields,
    messages_decoder,
    to_chat_request,
)
from engine.errors import ThriftyError, translate
from engine.types import Meta
from router.providers.anthropic_wire import FINISH_TO_STOP, usage_to_anthropic
from router.types import ChatChunk, ChatRequest, ChatResponse, text_of

# HTTP status -> Anthropic's error type (https://docs.anthropic.com/en/api/errors)
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}


def error_body(err: ThriftyError) -> bytes:
    kind = _ERROR_TYPES.get(err.status, "api_error" if err.status >= 500 else "invalid_request_error")
    return json_encode({"type": "error", "error": {"type": kind, "message": err.message}})


def _stop_reason(finish: str | None) -> str:
    return FINISH_TO_STOP.get(finish or "stop", "end_turn")


def _message_id(meta: Meta) -> str:
    return f"msg_{meta.request_id}"


class _State(msgspec.Struct, frozen=True):
    input_estimate: int  # message_start's input_tokens, before the upstream has counted them
    ignored: list[str]


def _input_estimate(request: ChatRequest) -> int:
    from models.tokens import estimate_messages

    return estimate_messages([text_of(m.content) for m in request.messages])


class MessagesDoor(ChatDoor):
    what = "Anthropic Messages"

    def decode(self, body: bytes, tenant: str) -> tuple[ChatRequest, _State]:
        wire = decode_body(body, messages_decoder, self.what)
        req = to_chat_request(wire)
        return req, _State(_input_estimate(req), ignored_fields(wire))

    def extra_headers(self, state: _State) -> dict[str, str]:
        return {"x-thrifty-ignored-fields": ", ".join(state.ignored)} if state.ignored else {}

    def error_body(self, err: ThriftyError) -> bytes:
        return error_body(err)

    def encode(self, response: ChatResponse, meta: Meta, state: _State) -> bytes:
        choice = response.choices[0]
        content: list[dict[str, Any]] = []
        if choice.message.content:
            content.append({"type": "text", "text": choice.message.content})
        for call in choice.message.tool_calls or ():
            content.append({"type": "tool_use", "id": call.id, "name": call.function.name,
                            "input": _parse_input(call.function.arguments)})
        return json_encode({
            "id": _message_id(meta), "type": "message", "role": "assistant", "model": response.model or meta.model or "",
            "content": content, "stop_reason": _stop_reason(choice.finish_reason), "stop_sequence": None,
            "usage": usage_to_anthropic(response.usage),
        })

    def events(self, chunks: AsyncIterator[ChatChunk], meta: Meta, state: _State,
               model: str) -> AsyncIterator[bytes]:
        return _EventWriter(meta, state.input_estimate, model).run(chunks)

    async def count_tokens(self, request: Request) -> Response:
        try:
            self.proxy.authenticate(request)
            req = decode_body(await self.proxy.read_body(request), count_decoder, "count_tokens")
            n = count_tokens(req)
        except Exception as exc:
            return self.error(exc)
        return JSONBytes(json_encode({"input_tokens": n}), headers={"x-thrifty-token-count": "estimated"})


def _parse_input(arguments: str) -> Any:
    try:
        value = msgspec.json.decode(arguments) if arguments else {}
    except msgspec.DecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_value": value}


def _sse(kind: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + json_encode(payload) + b"\n\n"


class _EventWriter:
    """OpenAI-shaped chunks -> the Messages event sequence: message_start, then per content block
    content_block_start / *_delta / content_block_stop, then message_delta (stop_reason, usage), message_stop."""

    def __init__(self, meta: Meta, input_estimate: int, model: str) -> None:
        self.meta, self.model = meta, model
        self.input_estimate = input_estimate
        self.block = -1  # index of the open content block, -1 when none is open
        self.open_kind = ""  # "text" or "tool"
        self.tool_blocks: dict[int, int] = {}  # OpenAI tool-call index -> content block index
        self.finish: str | None = None
        self.usage: Any = None

    def _start(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.block += 1
        self.open_kind = kind
        out.append(_sse("content_block_start", {"type": "content_block_start", "index": self.block,
                                                "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        if not self.open_kind:
            return []
        self.open_kind = ""
        return [_sse("content_block_stop", {"type": "content_block_stop", "index": self.block})]

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        out: list[bytes] = []
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices[:1]:  # the Messages API has one answer per request
            delta = choice.delta
            if delta.content:
                if self.open_kind != "text":
                    out += self._start("text", {"type": "text", "text": ""})
                out.append(_sse("content_block_delta", {"type": "content_block_delta", "index": self.block,
                                                        "delta": {"type": "text_delta", "text": delta.content}}))
            for call in delta.tool_calls or ():
                if call.index not in self.tool_blocks:
                    fn = call.function
                    out += self._start("tool", {"type": "tool_use", "id": call.id or f"toolu_{call.index}",
                                                "name": (fn.name or "") if fn else "", "input": {}})
                    self.tool_blocks[call.index] = self.block
                args = call.function.arguments if call.function else ""
                if args:
                    out.append(_sse("content_block_delta", {
                        "type": "content_block_delta", "index": self.tool_blocks[call.index],
                        "delta": {"type": "input_json_delta", "partial_json": args}}))
            if choice.finish_reason:
                self.finish = choice.finish_reason
        return out

    async def run(self, chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[bytes]:
        yield _sse("message_start", {"type": "message_start", "message": {
            "id": _message_id(self.meta), "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.input_estimate, "output_tokens": 0}}})
        try:
            async for chunk in chunks:
                for event in self.feed(chunk):
                    yield event
        except Exception as exc:
            # After content was sent the only honest ending is Anthropic's error event, not message_stop.
            err = translate(exc)
            yield b"event: error\ndata: " + error_body(err) + b"\n\n"
            return
        for event in self._close():
            yield event
        usage = usage_to_anthropic(self.usage) if self.usage is not None else {"output_tokens": 0}
        yield _sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": _stop_reason(self.finish), "stop_sequence": None},
                                     "usage": usage})
        yield _sse("message_stop", {"type": "message_stop"})
        # The cost is known only now: an SSE comment line, which SSE clients ignore (as on the chat door).
        yield b": thrifty " + json_encode({"cost_usd": self.meta.cost_usd, "cost_estimated": self.meta.cost_estimated,
                                           "cache": self.meta.cache}) + b"\n\n"
