"""The admin API, behind the admin key (``Authorization: Bearer <admin key>`` or ``x-thrifty-admin-key``).

    GET    /admin/config                 the resolved config, secrets redacted
    GET    /admin/stats                  ledger aggregations + cache stats (?since=<unix ts|ISO date>&tenant=)
    GET    /admin/budgets                every budget's spend, limits and status
    GET    /admin/routing/rules          the routing rules in force
    PUT    /admin/routing/rules          replace them (JSON list of rules)
    POST   /admin/cache/purge            {"namespace": "..."} -> {"purged": n}
    DELETE /admin/cache/entries/{id}     delete one entry
    GET    /admin/cache/export           the cache as JSONL
    GET    /admin/usage/export           the ledger as a file (?since=&until=&format=parquet|csv|jsonl), streamed
    GET    /admin/requests               ledger rows, newest first (?tenant=&key=&model=&provider=&cache=
                                         &status=&since=&until=&limit=&cursor=) -> {"data", "next_cursor"}
    GET    /admin/audit                  run-time changes, newest first (?limit=&before=&action=)
                                         -> {"data", "next_before"}
    POST   /admin/cache/import           JSONL body -> {"imported": n}
    GET    /admin/experiments[/{name}]   experiments, one with its report; POST to create, and
                                         .../promote|rollback|stop|resume|weights (engine._experiment_admin)
"""

from __future__ import annotations

import asyncio
import hmac
import io
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cache import export_jsonl, import_jsonl, namespace_problem, space
from cache.errors import CacheInputError, EncoderMismatchError
from engine._request_log import page as request_page
from engine.errors import AuthError, ConflictError, ForbiddenError, RequestError
from engine.export import MEDIA_TYPES, export, parse_time
from engine.limits import check_depth
from router.types import ChatResponse

if TYPE_CHECKING:
    from engine.engine import Engine

_json = msgspec.json.Encoder()
_response_decoder = msgspec.json.Decoder(ChatResponse)
Handler = Callable[[Request], Awaitable[Response]]


def _ok(data: Any, status: int = 200) -> Response:
    return Response(_json.encode(data), status_code=status, media_type="application/json")


def redacted_config(engine: Engine) -> dict[str, Any]:
    data = msgspec.to_builtins(engine.settings.raw)
    for tenant in data.get("tenants", {}).values():
        for key in tenant.get("keys", []):
            if key.get("key"):
                key["key"] = "***"
    state = data.get("state")
    if state:  # a Redis URL may carry a password
        from engine.state.config import redact_url

        if isinstance(state, str):
            data["state"] = redact_url(state)
        else:
            state["url"] = redact_url(state["url"])
    data["_resolved"] = {
        "source": engine.settings.source,
        "data_dir": str(engine.settings.data_dir),
        "simulated": engine.settings.simulated,
        "providers": [p.name for p in engine.settings.providers],
    }
    return data


class Admin:
    def __init__(self, engine: Engine) -> None:
        from engine.ui import Sessions

        self.engine = engine
        self.sessions = Sessions(engine.settings.data_dir / "ui_sessions.sqlite3")  # opened on first use

    def guarded(self, handler: Handler) -> Handler:
        from engine.server import error_response

        async def endpoint(request: Request) -> Response:
            try:
                request.state.actor = self.check(request)
                return await handler(request)
            except Exception as exc:
                return error_response(exc)

        return endpoint

    def check(self, request: Request) -> str:
        """Who is calling (the audit's actor): the admin key, or a dashboard session (engine.ui)."""
        admin_key = self.engine.settings.admin_key
        if admin_key is None:
            env = self.engine.settings.raw.server.admin_key_env
            raise ForbiddenError(f"the admin API is disabled: set the {env} environment variable")
        auth = request.headers.get("authorization", "")
        token = request.headers.get("x-thrifty-admin-key") or (auth[7:].strip() if auth[:7].lower() == "bearer " else "")
        if not token and self.sessions.cookie_of(request):
            return self.sessions.actor(request)  # AuthError when unknown or expired; CSRF checked on writes
        if not token:
            raise AuthError("missing admin key")
        if not hmac.compare_digest(token.encode(), admin_key.encode()):
            raise AuthError("invalid admin key")
        return "admin-key"

    async def config(self, request: Request) -> Response:
        return _ok(redacted_config(self.engine))

    async def stats(self, request: Request) -> Response:
        since = parse_since(request.query_params.get("since"))
        tenant = request.query_params.get("tenant")
        await self.engine.flush()
        summary = self.engine.ledger.summary(since=since, tenant=tenant)
        summary["cache"] = msgspec.to_builtins(self.engine.cache_stats())
        from engine.feedback import quality

        # per namespace: hit rate, money saved, the false-hit estimate of shadow verdicts and feedback
        summary["quality"] = await asyncio.to_thread(quality, self.engine.ledger, tenant=tenant, since=since)
        summary["budgets"] = msgspec.to_builtins(self.engine.budgets.states())
        return _ok(summary)

    async def budgets(self, request: Request) -> Response:
        await self.engine.flush()
        return _ok(msgspec.to_builtins(self.engine.budgets.states()))

    async def get_rules(self, request: Request) -> Response:
        return _ok(msgspec.to_builtins(self.engine.routing_rules()))

    async def json_body(self, request: Request, empty: Any = None) -> Any:
        body = await request.body()
        if not body and empty is not None:
            return empty
        check_depth(body, self.engine.settings.raw.server.max_json_depth)
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise RequestError(f"malformed JSON: {exc}") from exc

    async def put_rules(self, request: Request) -> Response:
        body = await self.json_body(request)
        if not isinstance(body, list):
            raise RequestError("routing rules must be a JSON list of rule objects")
        # Through the overlay: applied live, persisted across restarts and audited.
        await asyncio.to_thread(self.engine.overlay.apply, {"routing": {"rules": body}}, request.state.actor)
        return _ok(msgspec.to_builtins(self.engine.routing_rules()))

    async def purge(self, request: Request) -> Response:
        data = await self.json_body(request, empty={})
        return _ok({"purged": self.engine.cache.purge(self._space(data))})

    def _space(self, data: Any) -> str:
        """The space a purge names: ``{"tenant": t, "namespace": n}`` (n defaults to the tenant's default
        namespace) or ``{"namespace": n, "shared": true}`` for a namespace shared between tenants."""
        usage = 'body must be {"tenant": "<tenant>", "namespace": "<name>"} or {"namespace": "<name>", "shared": true}'
        if not isinstance(data, dict):
            raise RequestError(usage)
        tenant, namespace = data.get("tenant"), data.get("namespace")
        if data.get("shared") is True:
            if not isinstance(namespace, str) or namespace_problem(namespace):
                raise RequestError(usage, param="namespace")
            return space(None, namespace)
        if not isinstance(tenant, str) or not tenant:
            raise RequestError(usage, param="tenant")
        if namespace is not None and (not isinstance(namespace, str) or namespace_problem(namespace)):
            raise RequestError(usage, param="namespace")
        owner, ns = self.engine.space_of(tenant, namespace)
        return space(tenant if owner is not None else None, ns)

    async def delete_entry(self, request: Request) -> Response:
        raw = request.path_params["entry_id"]
        if not (raw.isascii() and raw.isdigit()) or int(raw) >= 2**64:
            raise RequestError(f"entry id must be an integer from 0 to 2^64-1, got {raw[:40]!r}", param="entry_id")
        entry_id = int(raw)
        return _ok({"deleted": bool(self.engine.cache.delete(entry_id))})

    async def export(self, request: Request) -> Response:
        buf = io.BytesIO()
        export_jsonl(self.engine.cache, buf)
        return Response(buf.getvalue(), media_type="application/x-ndjson")

    async def usage_export(self, request: Request) -> Response:
        q = request.query_params
        for name in q:
            if name not in ("since", "until", "format"):
                raise RequestError(f"unknown parameter {name[:40]!r}; known: format, since, until", param=name)
        since = parse_time(q["since"], param="since") if q.get("since") else None
        until = parse_time(q["until"], param="until") if q.get("until") else None
        fmt = q.get("format", "parquet")
        await self.engine.flush()
        body = export(self.engine.ledger.path, since=since, until=until, fmt=fmt)
        return StreamingResponse(body, media_type=MEDIA_TYPES[fmt],
                                 headers={"content-disposition": f'attachment; filename="usage.{fmt}"'})

    async def requests(self, request: Request) -> Response:
        await self.engine.flush()
        return _ok(await asyncio.to_thread(request_page, self.engine.ledger, request.query_params))

    async def audit(self, request: Request) -> Response:
        q = request.query_params
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            raise RequestError(f"limit must be an integer, got {q.get('limit')!r}") from None
        if not 1 <= limit <= 1000:
            raise RequestError(f"limit must be between 1 and 1000, got {limit}")
        before = parse_time(q["before"], param="before") if q.get("before") else None
        rows = await asyncio.to_thread(self.engine.audit.recent, limit, before, q.get("action") or None)
        return _ok({"data": rows, "next_before": rows[-1].ts if len(rows) == limit else None})

    async def import_(self, request: Request) -> Response:
        body = await request.body()
        return _ok({"imported": import_checked(self.engine.cache, io.BytesIO(body))})


def import_checked(cache: Any, source: Any) -> int:
    """``cache.import_jsonl`` with every stored answer checked to decode as a chat response; the count.
    A bad record is a 400 naming its line and field, another encoder a 409, and nothing is imported."""
    try:
        return import_jsonl(cache, source, check_payload=_check_payload)
    except EncoderMismatchError as exc:
        raise ConflictError(str(exc)) from exc
    except CacheInputError as exc:
        raise RequestError(str(exc)) from exc


def _check_payload(payload: bytes) -> None:
    try:
        _response_decoder.decode(payload)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def parse_since(raw: str | None) -> float | None:
    """``?since=``: what :func:`engine.export.parse_time` reads (unix ts, ISO 8601, ``7d``), or None."""
    return parse_time(raw, param="since") if raw else None


def admin_routes(engine: Engine) -> list[Route]:
    from engine._experiment_admin import experiment_routes
    from engine.ui import dashboard_routes

    a = Admin(engine)
    g = a.guarded
    return [
        Route("/admin/config", g(a.config), methods=["GET"]),
        Route("/admin/stats", g(a.stats), methods=["GET"]),
        Route("/admin/budgets", g(a.budgets), methods=["GET"]),
        Route("/admin/routing/rules", g(a.get_rules), methods=["GET"]),
        Route("/admin/routing/rules", g(a.put_rules), methods=["PUT"]),
        Route("/admin/cache/purge", g(a.purge), methods=["POST"]),
        Route("/admin/cache/entries/{entry_id}", g(a.delete_entry), methods=["DELETE"]),
        Route("/admin/cache/export", g(a.export), methods=["GET"]),
        Route("/admin/cache/import", g(a.import_), methods=["POST"]),
        Route("/admin/usage/export", g(a.usage_export), methods=["GET"]),
        Route("/admin/requests", g(a.requests), methods=["GET"]),
        Route("/admin/audit", g(a.audit), methods=["GET"]),
        *experiment_routes(a),  # /admin/experiments[/{name}[/promote|rollback|stop|resume|weights|plot.png]]
        *dashboard_routes(a),  # /admin/controls, overview, providers, cache probe; /ui and its login
    ]
