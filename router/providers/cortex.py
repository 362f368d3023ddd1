"""Snowflake Cortex REST complete endpoint (``POST /api/v2/cortex/inference:complete``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import httpx
import msgspec

from models.schema import Route
from router.deadline import Deadline
from router.errors import MalformedResponse, ServerError
from router.providers._fields import FieldGate, unsupported
from router.providers.base import BadEvents, ChunkStream, HTTPProvider, error_message
from router.providers.config import ProviderConfig, base_url_of, read_api_key, resolve_template
from router.providers.cortex_wire import CortexStreamTranslator, to_cortex_request
from router.providers.fanout import MAX_FAN_OUT, fan_out
from router.streaming import ChunkAccumulator
from router.types import ChatChunk, ChatRequest, ChatResponse, has_images

_encoder = msgspec.json.Encoder()
_decode_dict = msgspec.json.Decoder(dict[str, Any])
PATH = "/api/v2/cortex/inference:complete"


class CortexProvider(HTTPProvider):
    kind: ClassVar[str] = "cortex"
    __slots__ = ("_gate",)

    def __init__(self, config: ProviderConfig) -> None:
        key = read_api_key(config)
        headers = {"accept": "application/json, text/event-stream"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if config.auth_token_type:
            headers["X-Snowflake-Authorization-Token-Type"] = config.auth_token_type
        for name, template in config.headers.items():
            value = resolve_template(template, api_key=key, config=config)
            if value is not None:
                headers[name] = value
        super().__init__(config, url=base_url_of(config) + PATH, headers=headers, secrets=(key,) if key else ())
        self._gate = FieldGate(self.kind)

    def check(self, request: ChatRequest) -> None:
        """Refuse, naming the field, what Cortex cannot honour (router.providers.fields)."""
        self._gate.check(request, self.name)
        why = ""
        if has_images(request):
            field, why = "messages", "images are not supported"
        elif (request.n or 1) > MAX_FAN_OUT:
            field, why = "n", f"at most {MAX_FAN_OUT}"
        if why:
            raise unsupported(field, self.name, self.kind, why)

    async def send(self, request: ChatRequest, route: Route, deadline: Deadline) -> ChatResponse | ChunkStream:
        self.check(request)
        if (request.n or 1) > 1:
            return await fan_out(self.send, request, route, deadline)  # each call has n unset
        body = to_cortex_request(request, route.model, stream=True)
        body.update(self.config.extra_body)
        response = await self.post(_encoder.encode(body), deadline)
        await self.check_event_stream(response)
        bad = BadEvents(self.config.retries.max_bad_events)
        stream = ChunkStream(self._chunks(response, bad), bad)
        if request.stream:
            return stream
        # Cortex streams by default; a non-streaming caller gets the stream folded into one answer.
        return await _fold(stream)

    async def _chunks(self, response: httpx.Response, bad: BadEvents) -> AsyncGenerator[ChatChunk, None]:
        translator = CortexStreamTranslator()
        try:
            async for data in self.sse_data(response):
                if data == b"[DONE]":
                    break
                try:
                    event = _decode_dict.decode(data)
                except msgspec.DecodeError as exc:
                    self.skip_bad_event(bad, exc)
                    continue
                if "error" in event or ("message" in event and "choices" not in event):
                    raise ServerError(error_message(data, self._clean), provider=self.name)
                try:
                    chunk = translator.feed(event)
                except (KeyError, TypeError) as exc:
                    raise MalformedResponse(f"unexpected stream chunk shape: {exc!r}", provider=self.name) from exc
                if chunk is not None:
                    yield chunk
            for chunk in translator.closing():
                yield chunk
        finally:
            await response.aclose()


async def _fold(stream: ChunkStream) -> ChatResponse:
    acc = ChunkAccumulator()
    async for chunk in stream:
        acc.feed(chunk)
    return acc.response()
