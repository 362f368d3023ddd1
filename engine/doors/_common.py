"""What every door shares: authenticate, read, decode into the one internal ``ChatRequest``, run it
through the engine's pipeline, and hand the answer (or a stream of chunks) to the door's encoder.

A door supplies three things: a decoder (its wire body -> ``ChatRequest``), an encoder for a whole
answer, and an encoder for a stream of chunks. Errors are rendered by the door's own error shape.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cache.scope import Scope, space
from engine.access_log import note as access_note
from engine.controls import merge, options_from_headers, validate
from engine.errors import RequestError, ThriftyError, translate
from engine.ledger import new_request_id
from engine.limits import check_request, check_request_id
from engine.types import Meta
from router.types import ChatChunk, ChatRequest, ChatResponse

if TYPE_CHECKING:
    from engine.server import Proxy

log = logging.getLogger("thrifty.server")
json_encode = msgspec.json.Encoder().encode
_canonical = msgspec.json.Encoder(order="sorted")
ErrorRenderer = Callable[[ThriftyError], bytes]


class JSONBytes(Response):
    media_type = "application/json"


def exact_scope(owner: str | None, namespace: str, kind: list[Any], text: str) -> Scope:
    """An exact-only cache scope in ``owner``'s ``namespace`` for ``text``: ``kind`` (e.g. the embedding
    model and length) is in the partition, so no two kinds, and no chat request, share a key."""
    partition = hashlib.blake2b(_canonical.encode([owner, namespace, *kind]), digest_size=16).digest()
    exact = hashlib.blake2b(partition, digest_size=16)
    exact.update(text.encode("utf-8", "surrogatepass"))
    return Scope(space(owner, namespace), partition, exact.digest(), "")


def decode_body(body: bytes, decoder: msgspec.json.Decoder[Any], what: str) -> Any:
    """A typed body, or a 400 naming the field msgspec complained about."""
    if not body:
        raise RequestError(f"empty request body: expected a JSON {what} request")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise RequestError(f"invalid request: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise RequestError(f"malformed JSON: {exc}") from exc


def convert(value: Any, type_: Any, where: str) -> Any:
    """``msgspec.convert`` with errors that say where in the body the bad value was."""
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise RequestError(f"invalid request: {where}: {exc}", param=where) from exc


class ChatDoor:
    """One door onto the chat pipeline; subclasses set ``decode``, ``encode`` and ``events``."""

    what = "chat"

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.engine = proxy.engine

    # -- supplied by each door -------------------------------------------------------------------------
    def decode(self, body: bytes, tenant: str) -> tuple[ChatRequest, Any]:
        """The internal request, and whatever of the caller's request the encoders need to echo."""
        raise NotImplementedError

    def encode(self, response: ChatResponse, meta: Meta, state: Any) -> bytes:
        raise NotImplementedError

    def events(self, chunks: AsyncIterator[ChatChunk], meta: Meta, state: Any, model: str) -> AsyncIterator[bytes]:
        """``model``: the name the stream's events carry (``model_label``)."""
        raise NotImplementedError

    def error_body(self, err: ThriftyError) -> bytes:
        return json_encode(err.body())

    def extra_headers(self, state: Any) -> dict[str, str]:
        """Headers of the door's own (e.g. the fields it accepted but did not apply)."""
        return {}

    # -- shared ------------------------------------------------------------------------------------------
    def model_label(self, meta: Meta) -> str:
        """The model a stream announces before its first chunk: the catalog id, labelled ``simulated/``
        when a simulated provider answers (as its whole answers are), so it never passes for a real one."""
        provider = self.engine.dispatcher.providers.get(meta.provider or "")
        model = meta.model or ""
        return f"simulated/{model}" if getattr(provider, "kind", "") == "simulated" else model

    def error(self, exc: BaseException, started_ns: int | None = None) -> Response:
        """The door's error shape, with the ``x-thrifty-*`` headers a chat error carries."""
        from engine.server import error_headers

        err = translate(exc)
        if err.status >= 500 and not isinstance(exc, ThriftyError):
            log.exception("internal error", exc_info=exc)
        headers = error_headers(err, new_request_id(), started_ns) or {}
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        return JSONBytes(self.error_body(err), status_code=err.status, headers=headers)

    async def handle(self, request: Request) -> Response:
        from engine.server import meta_headers

        proxy, limits = self.proxy, self.proxy.limits
        started = time.perf_counter_ns()
        client_id = request.headers.get("x-request-id")  # stored beside the server's id, never a key
        tenant: str | None = None
        try:
            check_request_id(client_id, limits.max_field_chars)
            tenant, key_name = proxy.authenticate(request)
            req, state = self.decode(await proxy.read_body(request), tenant)
            check_request(req, limits.max_field_chars)
            options = merge(req.thrifty, options_from_headers(request.headers))
            validate(options, max_chars=limits.max_field_chars)
            if req.stream:
                stream = self.engine.stream(req, tenant=tenant, key_name=key_name, options=options,
                                            client_request_id=client_id)
                access_note(request.scope, meta=stream.meta, tenant=tenant)  # final once the stream has ended
                first = await stream.start()  # errors before any byte: a clean error response
                final = stream.meta.cache in ("hit", "exact")  # a replay's cost is known now; an upstream's later
                headers = {**meta_headers(stream.meta, final=final, client_id=client_id), "cache-control": "no-cache",
                           **self.extra_headers(state)}
                return StreamingResponse(self.events(_chunks(stream, first), stream.meta, state,
                                                         self.model_label(stream.meta)),
                                         media_type="text/event-stream", headers=headers)
            result = await self.engine.complete(req, tenant=tenant, key_name=key_name, options=options,
                                                client_request_id=client_id)
        except Exception as exc:
            access_note(request.scope, tenant=tenant)
            return self.error(exc, started)
        access_note(request.scope, meta=result.meta, tenant=tenant)
        return JSONBytes(self.encode(result.response, result.meta, state),
                         headers={**meta_headers(result.meta, client_id=client_id), **self.extra_headers(state)})


async def _chunks(stream: Any, first: ChatChunk | None) -> AsyncIterator[ChatChunk]:
    if first is not None:
        yield first
    async for chunk in stream:
        yield chunk
