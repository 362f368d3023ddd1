"""The OpenAI-compatible proxy: Starlette on uvicorn (uvloop + httptools).

Routes: ``POST /v1/chat/completions`` (JSON or SSE), ``GET /v1/models``, ``GET /healthz``,
``GET /metrics``, ``POST /v1/feedback`` (:mod:`engine.feedback`) and the admin API (:mod:`engine.admin`). Every
chat response carries the
``x-thrifty-*`` headers; every error uses OpenAI's error shape with the right status.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.access_log import AccessLog, AccessLogMiddleware
from engine.access_log import note as access_note
from engine.controls import merge, options_from_headers, validate
from engine.engine import Engine
from engine.errors import AuthError, PayloadTooLarge, RequestError, RequestTimeout, ThriftyError, translate
from engine.ledger import new_request_id
from engine.limits import check_depth, check_request, check_request_id
from engine.limits import request_id as request_id_of
from engine.tracing import TraceparentMiddleware
from engine.types import Meta
from router.types import ChatRequest, request_decoder

log = logging.getLogger("thrifty.server")
_json = msgspec.json.Encoder()


class JSONBytes(Response):
    media_type = "application/json"


def error_response(exc: BaseException, request_id: str | None = None, started_ns: int | None = None) -> Response:
    err = translate(exc)
    if err.status >= 500 and not isinstance(exc, ThriftyError):
        log.exception("internal error", exc_info=exc)
    headers = error_headers(err, request_id, started_ns)
    retry_after = getattr(err, "retry_after", None)  # 503 circuit open: when a probe will be let through
    if retry_after is not None:
        headers = {**(headers or {}), "retry-after": str(retry_after)}
    return JSONBytes(_json.encode(err.body()), status_code=err.status, headers=headers)


def error_headers(err: ThriftyError, request_id: str | None, started_ns: int | None = None) -> dict[str, str] | None:
    """A chat error carries the same ``x-thrifty-*`` headers as an answer: the pipeline's account when the
    request got that far (``err.meta``), else a bypass that cost nothing."""
    if not request_id:
        return None
    meta = err.meta
    if meta is None:
        spent = (time.perf_counter_ns() - started_ns) / 1e6 if started_ns else 0.0
        meta = Meta(request_id=request_id, cache="bypass", overhead_ms=spent)
    return meta_headers(meta)


def _param_of(exc: msgspec.ValidationError) -> str | None:
    """The field a msgspec error names (``... - at `$.thrifty.ttl```) as OpenAI's ``param``: ``thrifty.ttl``."""
    _, sep, path = str(exc).rpartition(" - at `$.")
    return path.rstrip("`") or None if sep else None


def meta_headers(meta: Meta, *, final: bool = True, client_id: str | None = None) -> dict[str, str]:
    """``client_id``: the caller's x-request-id (already size-checked), echoed beside the server's id."""
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
    if meta.state:
        h["x-thrifty-state"] = meta.state
    if client_id:
        h["x-request-id"] = client_id
    return h


class Proxy:
    """Binds an Engine to HTTP: authentication, body limits, decoding, headers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.max_body = self.settings.raw.server.max_body_bytes
        self.limits = self.settings.raw.server

    def authenticate(self, request: Request) -> tuple[str, str | None]:
        keys = self.settings.keys
        auth = request.headers.get("authorization", "")
        # ``api-key`` is Azure's header, ``x-api-key`` Anthropic's (the Messages door's SDKs send it).
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else (
            request.headers.get("api-key") or request.headers.get("x-api-key") or "")
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
        try:
            body = await self._read_body(request)
        except ClientDisconnect:  # the transport gave up on a stalled body (engine.http_limits): nobody to answer
            raise RequestTimeout("request body not received in time") from None
        if len(body) > 1 << 18:  # a scan of megabytes (tens of ms) stays off the event loop
            await asyncio.to_thread(check_depth, body, self.limits.max_json_depth)
        else:
            check_depth(body, self.limits.max_json_depth)
        return body

    async def _read_body(self, request: Request) -> bytes:
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
            raise RequestError(f"invalid request: {exc}", param=_param_of(exc)) from exc
        except msgspec.DecodeError as exc:
            raise RequestError(f"malformed JSON: {exc}") from exc
        except RecursionError:  # read_body's depth check comes first; this is the last guard, never a 500
            raise RequestError("malformed JSON: nested too deeply") from None
        if not req.messages:
            raise RequestError("messages: at least one message is required", param="messages")
        check_request(req, self.limits.max_field_chars)
        return req

    async def chat(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        client_id = request.headers.get("x-request-id")
        # The id errors before the pipeline are reported under; the pipeline makes its own. The client's
        # id is never a key: it is stored beside the server's and echoed once it passed the size check.
        request_id = new_request_id()
        tenant: str | None = None
        try:
            check_request_id(client_id, self.limits.max_field_chars)
            tenant, key_name = self.authenticate(request)
            req = self.decode(await self.read_body(request))
            options = merge(req.thrifty, options_from_headers(request.headers))
            validate(options, max_chars=self.limits.max_field_chars)
            if req.stream:
                return await self._stream(request, req, tenant, key_name, options, client_id)
            result = await self.engine.complete(req, tenant=tenant, key_name=key_name, options=options,
                                                client_request_id=client_id)
        except Exception as exc:
            meta = getattr(exc, "meta", None)  # the pipeline's account when it got that far (model, provider)
            access_note(request.scope, tenant=tenant, meta=meta, request_id=None if meta is not None else request_id)
            response = error_response(exc, request_id, started)
            if client_id and request_id_of(client_id, self.limits.max_field_chars) == client_id:
                response.headers["x-request-id"] = client_id
            return response
        access_note(request.scope, meta=result.meta, tenant=tenant)
        return JSONBytes(_json.encode(result.response), headers=meta_headers(result.meta, client_id=client_id))

    async def _stream(self, request: Request, req: ChatRequest, tenant: str, key_name: str | None, options: Any,
                      client_id: str | None) -> Response:
        stream = self.engine.stream(req, tenant=tenant, key_name=key_name, options=options,
                                    client_request_id=client_id)
        access_note(request.scope, meta=stream.meta, tenant=tenant)  # final once the stream has ended
        first = await stream.start()  # raises before any byte is sent: a clean error response
        return StreamingResponse(self._sse(stream, first), media_type="text/event-stream",
                                 headers={**meta_headers(stream.meta, final=stream.meta.cache in ("hit", "exact"),
                                                         client_id=client_id),
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

    async def healthz(self, request: Request) -> Response:
        body: dict[str, Any] = {"status": "ok", "simulated": self.settings.simulated}
        if self.engine.state is not None:  # shared state: "redis", or "degraded" while running on local state
            body["state"] = "degraded" if self.engine.state.degraded else "redis"
        return JSONResponse(body)

    async def metrics(self, request: Request) -> Response:
        return Response(self.engine.metrics.render(), media_type="text/plain; version=0.0.4")


def create_app(engine: Engine | None = None, *, freeze_gc: bool = False, log_notes: bool = True) -> Starlette:
    """The proxy's ASGI app. ``freeze_gc`` (set by ``thrifty serve``, which owns its process) moves
    everything loaded at startup out of the collector's reach once the engine is warm."""
    from engine.admin import admin_routes
    from engine.doors import door_routes, route_handlers
    from engine.feedback import feedback_endpoint

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
        for note in engine.settings.notes if log_notes else ():
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
        Route("/v1/feedback", feedback_endpoint(proxy), methods=["POST"]),  # engine.feedback
        *door_routes(proxy),  # /v1/messages, /v1/responses, /v1/embeddings, /v1/models[/{id}]
        Route("/healthz", proxy.healthz, methods=["GET"]),
        Route("/metrics", proxy.metrics, methods=["GET"]),
        *admin_routes(engine),
    ]
    access = AccessLog(engine.settings.raw.server.access_log)
    middleware = [Middleware(AccessLogMiddleware, log=access)] if access.enabled else []
    if engine.tracing is not None:  # only then: the caller's traceparent, continued by the request's trace
        middleware.append(Middleware(TraceparentMiddleware))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers=route_handlers(routes))  # JSON 404/405 naming the served routes
    app.state.engine = engine
    app.state.limits = engine.settings.raw.server  # read by engine.http_limits' protocol, per connection
    return app


def app_from_env() -> Starlette:
    """uvicorn's factory for ``thrifty serve``: config from ``THRIFTY_CONFIG``, else embedded defaults."""
    # ``thrifty serve`` printed the config's notes once, before any worker started.
    return create_app(Engine(), freeze_gc=True, log_notes=False)
