"""Anthropic Messages API provider (translation in ``anthropic_wire``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, ClassVar

import httpx
import msgspec

from models.schema import Route
from router.errors import IncompleteStream, MalformedResponse, ServerError
from router.providers.anthropic_wire import StreamTranslator, from_anthropic_response, to_anthropic_request
from router.providers.base import HTTPProvider
from router.providers.config import ProviderConfig, base_url_of, read_api_key, resolve_template
from router.types import ChatChunk, ChatRequest, ChatResponse

_encoder = msgspec.json.Encoder()
_decode_dict = msgspec.json.Decoder(dict[str, Any])


def _decode_response(body: bytes) -> ChatResponse:
    return from_anthropic_response(_decode_dict.decode(body))


class AnthropicProvider(HTTPProvider):
    kind: ClassVar[str] = "anthropic"
    __slots__ = ("_extra",)
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

    def encode(self, request: ChatRequest, route: Route) -> bytes:
        body = to_anthropic_request(request, route.model)
        body.update(self._extra)
        return _encoder.encode(body)

    async def _chunks(self, response: httpx.Response) -> AsyncGenerator[ChatChunk, None]:
        translator = StreamTranslator()
        try:
            async for data in self.sse_data(response):
                try:
                    event = _decode_dict.decode(data)
                except msgspec.DecodeError as exc:
                    raise MalformedResponse(f"undecodable stream event: {exc}", provider=self.name) from exc
                if event.get("type") == "error":
                    err = event.get("error") or {}
                    raise ServerError(self._clean(f"{err.get('type', 'error')}: {err.get('message', '')}"),
                                      provider=self.name)
                try:
                    chunk = translator.feed(event)
                except (KeyError, TypeError) as exc:
                    raise MalformedResponse(f"unexpected stream event shape: {exc!r}", provider=self.name) from exc
                if chunk is not None:
                    yield chunk
                if translator.done:
                    return
            raise IncompleteStream("stream ended without message_stop", provider=self.name)
        finally:
            await response.aclose()
