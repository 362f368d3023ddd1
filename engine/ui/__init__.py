"""The dashboard: a web app at ``/ui`` (``/`` redirects there), shipped as package data, working offline.

The page itself (HTML, ES modules, CSS under ``engine/ui/static``) holds no data; everything it shows
comes from JSON routes behind the admin key, which accept either the key (``Authorization: Bearer``) or a
dashboard session (:mod:`engine.ui._sessions`):

    GET   /ui, /ui/static/<file>   the app (no data)
    POST  /ui/login                {"key": "<admin key>"} -> session cookie (HTTP-only, SameSite=Strict)
    GET   /ui/session              {"actor", "csrf", "expires"} of the signed-in session, else 401
    POST  /ui/logout               ends the session
    GET   /admin/overview          ?window=1h|24h|7d|30d&reference=<model>: totals, series, spend vs budgets
    GET   /admin/spend             ?window=: spend series by model, provider, tenant, key; top prompts
    GET   /admin/providers         ?window=: per deployment latency and errors, circuits, recent errors
    GET   /admin/cache/namespaces  entries and bytes per cache space, cache counters, false-hit estimates
    POST  /admin/cache/probe       {"prompt", "tenant"?, "namespace"?, "model"?, "threshold"?}: what it would hit
    GET   /admin/controls          the controllable settings (engine.overlay)
    PATCH /admin/controls          a partial overlay: applied live, persisted, audited
"""

from __future__ import annotations

import asyncio
import hmac
from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from engine.errors import AuthError, ForbiddenError, RequestError
from engine.ui import _data
from engine.ui._sessions import COOKIE, CSRF_HEADER, Sessions

if TYPE_CHECKING:
    from engine.admin import Admin

__all__ = ["CSRF_HEADER", "Sessions", "dashboard_routes"]

_json = msgspec.json.Encoder()
_STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
           "charts.js": "text/javascript; charset=utf-8", "format.js": "text/javascript; charset=utf-8",
           "app.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
_SECURITY = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def _ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(data), status_code=status, media_type="application/json",
                    headers={"cache-control": "no-store", **(headers or {})})


class Dashboard:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.engine = admin.engine
        self.sessions = admin.sessions
        self.memo = _data.Memo()
        self.rollup = _data.Rollup()  # the ledger folded into minutes, for the Overview and Spend
        self._files: dict[str, bytes] = {}

    # ------------------------------------------------------------------------------------------ the app
    async def root(self, request: Request) -> Response:
        return RedirectResponse("/ui", status_code=307)

    async def index(self, request: Request) -> Response:
        return self._file("index.html")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response(_json.encode({"error": {"message": f"no such file: {name[:80]}", "type": "not_found"}}),
                            status_code=404, media_type="application/json")
        return self._file(name)

    def _file(self, name: str) -> Response:
        body = self._files.get(name)
        if body is None:
            body = self._files[name] = resources.files("engine.ui").joinpath("static", name).read_bytes()
        return Response(body, media_type=_STATIC[name], headers=_SECURITY)

    # ------------------------------------------------------------------------------------------ sessions
    async def login(self, request: Request) -> Response:
        from engine.server import error_response

        try:
            admin_key = self.engine.settings.admin_key
            if admin_key is None:
                env = self.engine.settings.raw.server.admin_key_env
                raise ForbiddenError(f"the admin API is disabled: set the {env} environment variable")
            try:
                body = msgspec.json.decode(await request.body())
            except msgspec.DecodeError as exc:
                raise RequestError('login body must be JSON: {"key": "<admin key>"}') from exc
            key = body.get("key") if isinstance(body, dict) else None
            if not isinstance(key, str) or not key:
                raise RequestError('login body must be JSON: {"key": "<admin key>"}', param="key")
            if not hmac.compare_digest(key.encode(), admin_key.encode()):
                await asyncio.sleep(0.25)  # a guess costs time
                raise AuthError("invalid admin key")
            sid, session = await asyncio.to_thread(self.sessions.create)
        except Exception as exc:
            return error_response(exc)
        response = _ok({"actor": f"admin:{session.short}", "csrf": session.csrf, "expires": session.expires})
        response.set_cookie(COOKIE, sid, max_age=int(self.sessions.ttl_s), path="/", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def session(self, request: Request) -> Response:
        from engine.server import error_response

        try:
            s = await asyncio.to_thread(self.sessions.of, request)
        except Exception as exc:
            return error_response(exc)
        return _ok({"actor": f"admin:{s.short}", "csrf": s.csrf, "expires": s.expires})

    async def logout(self, request: Request) -> Response:
        from engine.server import error_response

        try:
            await asyncio.to_thread(self.sessions.actor, request)  # signed in, and the CSRF header matches
            sid = self.sessions.cookie_of(request)
            if sid:
                await asyncio.to_thread(self.sessions.delete, sid)
        except Exception as exc:
            return error_response(exc)
        response = _ok({"signed_out": True})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # ------------------------------------------------------------------------------------------ data
    def _params(self, request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
        q = request.query_params
        for name in q:
            if name not in allowed:
                raise RequestError(f"unknown parameter {name[:40]!r}; known: {', '.join(allowed)}", param=name)
        return dict(q)

    async def overview(self, request: Request) -> Response:
        q = self._params(request, ("window", "reference"))
        window, ref = _data.window_of(q.get("window"))[0], q.get("reference") or None
        return _ok(await self.memo.get(("overview", window, ref), _data.TTL_S,
                                        lambda: _data.overview(self.engine, window, ref, rollup=self.rollup)))

    async def spend(self, request: Request) -> Response:
        window = _data.window_of(self._params(request, ("window",)).get("window"))[0]
        out = await self.memo.get(("spend", window), _data.TTL_S,
                                  lambda: _data.spend(self.engine, window, rollup=self.rollup))
        top = await self.memo.get(("top", window), _data.TTL_S, lambda: _data.top_prompts(self.engine, window))
        return _ok({**out, "top_prompts": top["top_prompts"]})

    async def providers(self, request: Request) -> Response:
        window = _data.window_of(self._params(request, ("window",)).get("window"))[0]
        return _ok(await self.memo.get(("providers", window), _data.TTL_S,
                                        lambda: _data.providers(self.engine, window)))

    async def namespaces(self, request: Request) -> Response:
        """The cache's spaces (walked at most every 30 s), its counters, and the false-hit estimates."""
        fresh = self._params(request, ("fresh",)).get("fresh") == "1"  # after a purge: walk again now
        out = dict(await self.memo.get(("namespaces",), _data.NAMESPACE_TTL_S, lambda: _data.namespaces(self.engine),
                                       force=fresh))
        out["stats"] = msgspec.to_builtins(self.engine.cache_stats())
        out["quality"] = await self.memo.get(("quality",), 5.0, lambda: _data.quality(self.engine))
        return _ok(out)

    async def probe(self, request: Request) -> Response:
        return _ok(await _data.probe(self.engine, await request.body()))

    async def controls(self, request: Request) -> Response:
        return _ok(await asyncio.to_thread(self.engine.overlay.state))

    async def patch_controls(self, request: Request) -> Response:
        body = await self.admin.json_body(request)
        result = await asyncio.to_thread(self.engine.overlay.apply, body, request.state.actor)
        if result["changed"]:
            self.memo = _data.Memo()  # the next poll sees the new limits at once
        return _ok(result)


def dashboard_routes(admin: Admin) -> list[Route]:
    d = Dashboard(admin)
    g = admin.guarded
    return [
        Route("/", d.root, methods=["GET"]),
        Route("/ui", d.index, methods=["GET"]),
        Route("/ui/", d.index, methods=["GET"]),
        Route("/ui/static/{name}", d.static, methods=["GET"]),
        Route("/ui/login", d.login, methods=["POST"]),
        Route("/ui/session", d.session, methods=["GET"]),
        Route("/ui/logout", d.logout, methods=["POST"]),
        Route("/admin/overview", g(d.overview), methods=["GET"]),
        Route("/admin/spend", g(d.spend), methods=["GET"]),
        Route("/admin/providers", g(d.providers), methods=["GET"]),
        Route("/admin/cache/namespaces", g(d.namespaces), methods=["GET"]),
        Route("/admin/cache/probe", g(d.probe), methods=["POST"]),
        Route("/admin/controls", g(d.controls), methods=["GET"]),
        Route("/admin/controls", g(d.patch_controls), methods=["PATCH"]),
    ]
