"""``GET /v1/models`` and ``/v1/models/{id}``: only what a configured provider serves (plus ``auto``),
and the OpenAI-shaped JSON answers for unknown routes (404) and wrong methods (405)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
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

    def served(self) -> dict[str, _Served]:
        """Chat and embedding models with a route on a configured provider, plus ``auto``, by id."""
        providers = set(self.engine.dispatcher.providers)
        out = {"auto": _Served("auto", "thrifty")}
        for m in self.engine.catalog:
            if any(r.provider in providers for r in m.routes):
                out[m.id] = _Served(m.id, m.vendor, m.released, m.context_window, m.max_output)
        if self.embeddings is not None:
            for e in self.embeddings.served_models():
                out[e.id] = _Served(e.id, e.vendor, "", e.max_input_tokens)
        return out

    def find(self, name: str) -> _Served | None:
        served = self.served()
        model = served.get(name)
        if model is None and name in self.engine.catalog:  # an alias of a served model
            model = served.get(self.engine.catalog.get(name).id)
        return model

    async def list(self, request: Request) -> Response:
        try:
            self.proxy.authenticate(request)
        except Exception as exc:
            return self.proxy_error(exc, request)
        models = list(self.served().values())
        if _anthropic(request):  # the Anthropic SDK's models.list(): its own page shape
            data = [m.anthropic() for m in models]
            return JSONBytes(json_encode({"data": data, "has_more": False, "first_id": data[0]["id"],
                                          "last_id": data[-1]["id"]}))
        now = int(time.time())
        return JSONBytes(json_encode({"object": "list", "data": [m.openai(now) for m in models]}))

    async def get(self, request: Request) -> Response:
        try:
            self.proxy.authenticate(request)
        except Exception as exc:
            return self.proxy_error(exc, request)
        name = request.path_params["model"]
        model = self.find(name)
        if model is None:
            message = f"model {name!r} is not served by any configured provider; GET /v1/models lists those that are"
            if _anthropic(request):
                return JSONBytes(json_encode({"type": "error", "error": {"type": "not_found_error",
                                                                         "message": message}}), status_code=404)
            return _error(404, message, param="model", code="model_not_found")
        return JSONBytes(json_encode(model.anthropic() if _anthropic(request) else model.openai(int(time.time()))))

    @staticmethod
    def proxy_error(exc: BaseException, request: Request) -> Response:
        from engine.doors.anthropic_messages import error_body
        from engine.errors import translate
        from engine.server import error_response

        if _anthropic(request):
            err = translate(exc)
            return JSONBytes(error_body(err), status_code=err.status)
        return error_response(exc)


def _anthropic(request: Request) -> bool:
    """The Anthropic SDKs send ``anthropic-version`` on every call; OpenAI's never do."""
    return "anthropic-version" in request.headers


class _Served(msgspec.Struct, frozen=True):
    id: str
    vendor: str
    released: str = ""  # ISO date, "" when unknown
    window: int | None = None
    max_output: int | None = None

    def openai(self, now: int) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": now, "owned_by": self.vendor}

    def anthropic(self) -> dict[str, Any]:
        return {"type": "model", "id": self.id, "display_name": self.id, "lifecycle": "active",
                "created_at": f"{self.released or '1970-01-01'}T00:00:00Z",
                "max_input_tokens": self.window, "max_tokens": self.max_output}


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
