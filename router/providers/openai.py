"""OpenAI Chat Completions, and every OpenAI-compatible gateway (a preset: base URL + headers)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import ClassVar

import httpx
import msgspec

from models.schema import Route
from router.deadline import Deadline
from router.providers._fields import FieldGate
from router.providers.base import BadEvents, HTTPProvider, error_message, error_meta
from router.providers.config import ProviderConfig, auth_headers, base_url_of, read_api_key
from router.providers.embeddings import Embedded, embed_http
from router.types import ChatChunk, ChatRequest, ChatResponse, StreamOptions, chunk_decoder, response_decoder

_encoder = msgspec.json.Encoder()
_INCLUDE_USAGE = StreamOptions(include_usage=True)
_DONE = b"[DONE]"


def _decode_response(body: bytes) -> ChatResponse:
    response = response_decoder.decode(body)
    if not response.choices:
        raise ValueError("response has no choices")
    return response


class OpenAIProvider(HTTPProvider):
    kind: ClassVar[str] = "openai"
    __slots__ = ("_embed_url", "_extra", "_gate")
    decode_response = staticmethod(_decode_response)

    def __init__(self, config: ProviderConfig) -> None:
        key = read_api_key(config)
        super().__init__(
            config,
            url=base_url_of(config) + "/chat/completions",
            headers=auth_headers(config, key),
            secrets=(key,) if key else (),
        )
        self._extra = dict(config.extra_body)
        self._gate = FieldGate(self.kind)  # OpenAI format refuses only deprecated function calling
        self._embed_url = httpx.URL(base_url_of(config) + "/embeddings")  # parsed once, like the chat URL

    async def embed(self, inputs: list[str], model: str, dimensions: int | None, deadline: Deadline, *,
                    native: int = 0, user: str | None = None) -> Embedded:
        """OpenAI's ``/embeddings`` (the embeddings door's call; ``native`` is for the simulated twin)."""
        return await embed_http(self, self._embed_url, inputs, model, dimensions, deadline, user)

    def encode(self, request: ChatRequest, route: Route) -> bytes:
        self._gate.check(request, self.name)
        stream_options = request.stream_options
        if request.stream:
            # Ask for usage in the final chunk: without it a stream's cost would be a guess.
            stream_options = (
                _INCLUDE_USAGE if stream_options is None
                else msgspec.structs.replace(stream_options, include_usage=True)
            )
        wire = msgspec.structs.replace(request, model=route.model, thrifty=None, stream_options=stream_options)
        if not self._extra:
            return _encoder.encode(wire)
        body = msgspec.to_builtins(wire)
        body.update(self._extra)
        return _encoder.encode(body)

    async def _chunks(self, response: httpx.Response, bad: BadEvents) -> AsyncGenerator[ChatChunk, None]:
        # A clean end without ``data: [DONE]`` is not an error here: dispatch judges completeness by the
        # finish_reason of every choice (some servers never send the sentinel).
        try:
            async for data in self.sse_data(response):
                if data == _DONE:
                    return
                try:
                    chunk = chunk_decoder.decode(data)
                except msgspec.DecodeError as exc:
                    if b'"error"' in data:
                        raise self.stream_error(error_message(data, self._clean),
                                                error_meta(data, self._clean)) from exc
                    self.skip_bad_event(bad, exc)
                    continue
                yield chunk
        finally:
            await response.aclose()
