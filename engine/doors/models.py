"""``GET /v1/models`` and ``/v1/models/{id}``: only what a configured provider serves (plus ``auto``),
and the OpenAI-shaped JSON answers for unknown routes (404) and wrong methods (405)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.doors._common import JSONBytes, json_encode

if TYPE_CHECKING:
    from engine.doors.embeddings import EmbeddingsDoor
    from engine.server import Proxy


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return JSONBytes(json_encode(body), status_code=status, headers=headers)


class ModelsDoor:
    def __init__(self, proxy: Proxy, embeddings: EmbeddingsDoor | None = None) -> None:
        self.proxy = proxy
        self.engine = proxy.engine
        self.embeddings = embeddings

    def served(self) -> dict[str, dict[str, Any]]:
        """Model objects by id: chat models and embedding models with a route on a configured provider."""
        providers = set(self.engine.dispatcher.providers)
        now = int(time.time())
        out = {"auto": {"id": "auto", "object": "model", "created": now, "owned_by": "thrifty"}}
        for m in self.engine.catalog:
            if any(r.provider in providers for r in m.routes):
                out[m.id] = {"id": m.id, "object": "model", "created": now, "owned_by": m.vendor}
        if self.embeddings is not None:
            for e in self.embeddings.served_models():
                out[e.id] = {"id": e.id, "object": "model", "created": now, "owned_by": e.vendor}
        return out

    async def list(self, request: Request) -> Response:
        try:
            self.proxy.authenticate(request)
        except Exception as exc:
            return self.proxy_error(exc)
        return JSONBytes(json_encode({"object": "list", "data": list(self.served().values())}))

    async def get(self, request: Request) -> Response:
        try:
            self.proxy.authenticate(request)
        except Exception as exc:
            return self.proxy_error(exc)
        name = request.path_params["model"]
        served = self.served()
        model = served.get(name)
        if model is None and name in self.engine.catalog:  # an alias of a served model
            model = served.get(self.engine.catalog.get(name).id)
        if model is None:
            return _error(404, f"model {name!r} is not served by any configured provider; GET /v1/models lists "
                               "those that are", param="model", code="model_not_found")
        return JSONBytes(json_encode(model))

    @staticmethod
    def proxy_error(exc: BaseException) -> Response:
        from engine.server import error_response

        return error_response(exc)


def route_handlers(routes: Sequence[BaseRoute]) -> dict[Any, Callable[..., Any]]:
    """Starlette exception handlers for 404 and 405 that name the routes this server has."""
    served = []
    for r in routes:
        if isinstance(r, Route):
            methods = sorted(m for m in (r.methods or ()) if m != "HEAD")
            served.append(f"{'/'.join(methods)} {r.path}")
    listing = ", ".join(served)

    async def not_found(request: Request, exc: HTTPException) -> Response:
        return _error(404, f"unknown route {request.method} {request.url.path}; this server serves: {listing}",
                      code="unknown_route")

    async def not_allowed(request: Request, exc: HTTPException) -> Response:
        allow = (exc.headers or {}).get("Allow", "")
        return _error(405, f"method {request.method} is not allowed on {request.url.path} (allowed: {allow}); "
                           f"this server serves: {listing}", code="method_not_allowed",
                      headers={"Allow": allow} if allow else None)

    return {404: not_found, 405: not_allowed}
