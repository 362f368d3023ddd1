"""The OpenAI-compatible proxy: Starlette on uvicorn (uvloop + httptools).

Routes: ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``, ``GET /healthz``,
``GET /metrics`` and the admin API (:mod:`engine.admin`). Every chat response carries the
``x-thrifty-*`` headers; every error uses OpenAI's error shape with the right status.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.access_log import AccessLog, AccessLogMiddleware
from engine.access_log import note as access_note
from engine.controls import merge, options_from_headers, validate
from engine.engine import Engine
from engine.errors import AuthError, PayloadTooLarge, RequestError, ThriftyError, translate
from engine.types import Meta
from router.types import ChatRequest, request_decoder

log = logging.getLogger("thrifty.server")
_json = msgspec.json.Encoder()


class JSONBytes(Response):
    media_type = "application/json"


def error_response(exc: BaseException, request_id: str | None = None) -> Response:
    err = translate(exc)
    if err.status >= 500 and not isinstance(exc, ThriftyError):
        log.exception("internal error", exc_info=exc)
    headers = {"x-thrifty-request-id": request_id} if request_id else None
    return JSONBytes(_json.encode(err.body()), status_code=err.status, headers=headers)


def meta_headers(meta: Meta, *, final: bool = True) -> dict[str, str]:
    h = {
        "x-thrifty-cache": meta.cache,
        "x-thrifty-model": meta.model or "",
        "x-thrifty-provider": meta.provider or "",
        "x-thrifty-overhead-ms": f"{meta.overhead_ms:.3f}",
        "x-thrifty-request-id": meta.request_id,
    }
    # A stream's cost is known only at its end: the header then says so, and the cost arrives in an SSE
    # comment line after the last chunk (``: thrifty {...}``), which OpenAI clients ignore.
    h["x-thrifty-cost-usd"] = f"{meta.cost_usd:.8f}" if final else "pending"
    if meta.cost_estimated:
        h["x-thrifty-cost-estimated"] = "true"
    if meta.budget:
        h["x-thrifty-budget"] = meta.budget
    if meta.simulated:
        h["x-thrifty-simulated"] = "true"
    return h


class Proxy:
    """Binds an Engine to HTTP: authentication, body limits, decoding, headers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.max_body = self.settings.raw.server.max_body_bytes

    def authenticate(self, request: Request) -> tuple[str, str | None]:
        keys = self.settings.keys
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else (request.headers.get("api-key") or "")
        if not keys:
            return "default", None
        if not token:
            if self.settings.raw.server.allow_anonymous:
                return "default", None
            raise AuthError("missing virtual key: this gateway requires `Authorization: Bearer <key>`")
        info = keys.get(token)
        if info is None:
            raise AuthError("invalid virtual key")
        return info.tenant, info.name

    async def read_body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > self.max_body:
                    raise PayloadTooLarge(f"request body of {int(length)} bytes exceeds the limit of {self.max_body}")
            except ValueError:
                raise RequestError("invalid Content-Length header") from None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(f"request body exceeds the limit of {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def decode(self, body: bytes) -> ChatRequest:
        if not body:
            raise RequestError("empty request body: expected a JSON chat completion request")
        try:
            req = request_decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise RequestError(f"invalid request: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise RequestError(f"malformed JSON: {exc}") from exc
        if not req.messages:
            raise RequestError("messages: at least one message is required", param="messages")
        return req

    async def chat(self, request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        tenant: str | None = None
        try:
            tenant, key_name = self.authenticate(request)
            req = self.decode(await self.read_body(request))
            options = merge(req.thrifty, options_from_headers(request.headers))
            validate(options)
            if req.stream:
                return await self._stream(request, req, tenant, key_name, options, request_id)
            result = await self.engine.complete(req, tenant=tenant, key_name=key_name, options=options,
                                                request_id=request_id)
        except Exception as exc:
            access_note(request.scope, tenant=tenant, request_id=request_id)
            return error_response(exc, request_id)
        access_note(request.scope, meta=result.meta, tenant=tenant)
        return JSONBytes(_json.encode(result.response), headers=meta_headers(result.meta))

    async def _stream(self, request: Request, req: ChatRequest, tenant: str, key_name: str | None, options: Any,
                      request_id: str) -> Response:
        stream = self.engine.stream(req, tenant=tenant, key_name=key_name, options=options,
                                    request_id=request_id)
        access_note(request.scope, meta=stream.meta, tenant=tenant)  # final once the stream has ended
        first = await stream.start()  # raises before any byte is sent: a clean error response
        return StreamingResponse(self._sse(stream, first), media_type="text/event-stream",
                                 headers={**meta_headers(stream.meta, final=stream.meta.cache != "miss"),
                                          "cache-control": "no-cache"})

    async def _sse(self, stream: Any, first: Any) -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield b"data: " + _json.encode(first) + b"\n\n"
            async for chunk in stream:
                yield b"data: " + _json.encode(chunk) + b"\n\n"
        except Exception as exc:
            # After content was sent the only honest ending is an explicit error event, never [DONE].
            err = translate(exc)
            yield b"data: " + _json.encode(err.body()) + b"\n\n"
            return
        yield b": thrifty " + _json.encode({"cost_usd": stream.meta.cost_usd,
                                            "cost_estimated": stream.meta.cost_estimated,
                                            "cache": stream.meta.cache}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def models(self, request: Request) -> Response:
        try:
            self.authenticate(request)
        except Exception as exc:
            return error_response(exc)
        now = int(time.time())
        data = [{"id": "auto", "object": "model", "created": now, "owned_by": "thrifty"}]
        data += [{"id": m.id, "object": "model", "created": now, "owned_by": m.vendor}
                 for m in self.engine.catalog]
        return JSONBytes(_json.encode({"object": "list", "data": data}))

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "simulated": self.settings.simulated})

    async def metrics(self, request: Request) -> Response:
        return Response(self.engine.metrics.render(), media_type="text/plain; version=0.0.4")


def create_app(engine: Engine | None = None, *, freeze_gc: bool = False) -> Starlette:
    """The proxy's ASGI app. ``freeze_gc`` (set by ``thrifty serve``, which owns its process) moves
    everything loaded at startup out of the collector's reach once the engine is warm."""
    from engine.admin import admin_routes

    engine = engine or Engine()
    proxy = Proxy(engine)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await engine.start()
        if freeze_gc:
            # The catalog, encoder session, index and lexicon live as long as the process: a full
            # collection walking them is a pause of milliseconds landing on some request's p99.
            gc.collect()
            gc.freeze()
        for note in engine.settings.notes:
            log.warning("%s", note)
        access.start()
        announce = os.environ.get("THRIFTY_ANNOUNCE")
        if announce:  # several workers: each says so once it is warm (the parent bound the socket)
            print(f"thrifty: worker {os.getpid()} {announce}", file=sys.stderr, flush=True)
        try:
            yield
        finally:
            await engine.aclose()
            access.close()

    routes = [
        Route("/v1/chat/completions", proxy.chat, methods=["POST"]),
        Route("/chat/completions", proxy.chat, methods=["POST"]),
        Route("/v1/models", proxy.models, methods=["GET"]),
        Route("/healthz", proxy.healthz, methods=["GET"]),
        Route("/metrics", proxy.metrics, methods=["GET"]),
        *admin_routes(engine),
    ]
    access = AccessLog(engine.settings.raw.server.access_log)
    middleware = [Middleware(AccessLogMiddleware, log=access)] if access.enabled else []
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.engine = engine
    return app


def app_from_env() -> Starlette:
    """uvicorn's factory for ``thrifty serve``: config from ``THRIFTY_CONFIG``, else embedded defaults."""
    return create_app(Engine(), freeze_gc=True)
