"""Anthropic Messages API provider (translation in ``anthropic_wire``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import httpx
import msgspec

from models.schema import Route
from router.deadline import Deadline
from router.errors import MalformedResponse
from router.providers._fields import FieldGate, unsupported
from router.providers.anthropic_wire import (
    JSON_TOOL,
    MIN_THINKING_BUDGET,
    THINKING_BUDGET,
    StreamTranslator,
    from_anthropic_response,
    json_answer_tool,
    to_anthropic_request,
)
from router.providers.base import BadEvents, ChunkStream, HTTPProvider
from router.providers.config import ProviderConfig, base_url_of, read_api_key, resolve_template
from router.providers.fanout import MAX_FAN_OUT, fan_out
from router.types import ChatChunk, ChatRequest, ChatResponse

_encoder = msgspec.json.Encoder()
_decode_dict = msgspec.json.Decoder(dict[str, Any])


def _decode_response(body: bytes) -> ChatResponse:
    return from_anthropic_response(_decode_dict.decode(body))



def _thinking_conflict(request: ChatRequest) -> str:
    """Why extended thinking cannot serve this request ("" when it can): Anthropic's own rules for it."""
    effort = request.reasoning_effort
    cap = request.max_completion_tokens or request.max_tokens
    if effort not in THINKING_BUDGET and effort not in ("minimal", "none"):
        return f"unknown effort {effort!r}; one of none, minimal, {', '.join(THINKING_BUDGET)}"
    if effort not in THINKING_BUDGET:
        return ""
    if cap is not None and cap <= MIN_THINKING_BUDGET:
        return f"extended thinking needs max_tokens above {MIN_THINKING_BUDGET}"
    if request.temperature not in (None, 1, 1.0):
        return "extended thinking does not allow a temperature"
    if json_answer_tool(request) is not None or request.tool_choice == "required" or isinstance(request.tool_choice, dict):
        return "extended thinking cannot be combined with a forced tool (tool_choice, or emulated JSON mode)"
    if any(m.role in ("tool", "function") for m in request.messages):
        return "extended thinking after tool results needs the earlier thinking blocks, which the history lacks"
    return ""

class AnthropicProvider(HTTPProvider):
    kind: ClassVar[str] = "anthropic"
    __slots__ = ("_extra", "_gate")
    decode_response = staticmethod(_decode_response)

    def __init__(self, config: ProviderConfig) -> None:
        key = read_api_key(config)
        headers = {"anthropic-version": config.anthropic_version}
        if key:
            headers["x-api-key"] = key
        for name, template in config.headers.items():
            value = resolve_template(template, api_key=key, config=config)
            if value is not None:
                headers[name] = value
        super().__init__(config, url=base_url_of(config) + "/v1/messages", headers=headers,
                         secrets=(key,) if key else ())
        self._extra = dict(config.extra_body)
        self._gate = FieldGate(self.kind)

    def check(self, request: ChatRequest) -> None:
        """Refuse, naming the field, what the Messages API cannot honour (router.providers.fields)."""
        self._gate.check(request, self.name)
        why = ""
        if request.temperature is not None and request.temperature > 1:
            field, why = "temperature", "Anthropic accepts 0 to 1"
        elif request.response_format is not None and request.tools and json_answer_tool(request) is not None:
            field, why = "response_format", "JSON mode is emulated with a forced tool, so not together with tools"
        elif any(t.function.name == JSON_TOOL for t in request.tools or ()):
            field, why = "tools", f"the tool name {JSON_TOOL!r} is reserved"
        elif (request.n or 1) > MAX_FAN_OUT:
            field, why = "n", f"at most {MAX_FAN_OUT}"
        elif request.reasoning_effort is not None:
            field, why = "reasoning_effort", _thinking_conflict(request)
        if why:
            raise unsupported(field, self.name, self.kind, why)

    async def send(self, request: ChatRequest, route: Route, deadline: Deadline) -> ChatResponse | ChunkStream:
        if (request.n or 1) > 1:
            self.check(request)
            return await fan_out(super().send, request, route, deadline)
        return await super().send(request, route, deadline)

    def encode(self, request: ChatRequest, route: Route) -> bytes:
        self.check(request)
        body = to_anthropic_request(request, route.model)
        body.update(self._extra)
        return _encoder.encode(body)

    async def _chunks(self, response: httpx.Response, bad: BadEvents) -> AsyncGenerator[ChatChunk, None]:
        translator = StreamTranslator()
        try:
            async for data in self.sse_data(response):
                try:
                    event = _decode_dict.decode(data)
                except msgspec.DecodeError as exc:
                    self.skip_bad_event(bad, exc)
                    continue
                if event.get("type") == "error":
                    err = event.get("error") or {}
                    meta = {k: self._clean(str(err[k])) for k in ("type",) if isinstance(err.get(k), str)}
                    raise self.stream_error(self._clean(f"{err.get('type', 'error')}: {err.get('message', '')}"), meta)
                try:
                    chunk = translator.feed(event)
                except (KeyError, TypeError) as exc:
                    raise MalformedResponse(f"unexpected stream event shape: {exc!r}", provider=self.name) from exc
                if chunk is not None:
                    yield chunk
                if translator.done:
                    return
            # Ended without message_stop: complete if the finish (message_delta's stop_reason) came,
            # which dispatch judges; an answer without it is reported incomplete there.
        finally:
            await response.aclose()
