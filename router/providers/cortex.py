"""Snowflake Cortex REST complete endpoint (``POST /api/v2/cortex/inference:complete``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import httpx
import msgspec

from models.schema import Route
from router.deadline import Deadline
from router.errors import BadRequest, MalformedResponse, ServerError
from router.providers.base import ChunkStream, HTTPProvider, error_message
from router.providers.config import ProviderConfig, base_url_of, read_api_key, resolve_template
from router.providers.cortex_wire import CortexStreamTranslator, to_cortex_request
from router.streaming import ChunkAccumulator
from router.types import ChatChunk, ChatRequest, ChatResponse, ImagePart

_encoder = msgspec.json.Encoder()
_decode_dict = msgspec.json.Decoder(dict[str, Any])
PATH = "/api/v2/cortex/inference:complete"


class CortexProvider(HTTPProvider):
    kind: ClassVar[str] = "cortex"
    __slots__ = ()

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

    async def send(self, request: ChatRequest, route: Route, deadline: Deadline) -> ChatResponse | ChunkStream:
        if any(isinstance(m.content, list) and any(isinstance(p, ImagePart) for p in m.content)
               for m in request.messages):
            raise BadRequest("images are not supported by the cortex provider", provider=self.name)
        body = to_cortex_request(request, route.model, stream=True)
        body.update(self.config.extra_body)
        response = await self.post(_encoder.encode(body), deadline)
        await self.check_event_stream(response)
        stream = ChunkStream(self._chunks(response))
        if request.stream:
            return stream
        # Cortex streams by default; a non-streaming caller gets the stream folded into one answer.
        return await _fold(stream)

    async def _chunks(self, response: httpx.Response) -> AsyncGenerator[ChatChunk, None]:
        translator = CortexStreamTranslator()
        try:
            async for data in self.sse_data(response):
                if data == b"[DONE]":
                    break
                try:
                    event = _decode_dict.decode(data)
                except msgspec.DecodeError as exc:
                    raise MalformedResponse(f"undecodable stream chunk: {exc}", provider=self.name) from exc
                if "error" in event or ("message" in event and "choices" not in event):
                    raise ServerError(self._clean(error_message(data)), provider=self.name)
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
