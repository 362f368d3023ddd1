"""The experiments' admin routes (behind the admin key, like every ``/admin`` route; changes are audited
with the caller as actor).

    GET  /admin/experiments                    every experiment: config, state, current shares
    POST /admin/experiments                    create one (the config's shape) -> 201
    GET  /admin/experiments/{name}             config, state, guard-rail events and the report (?since=)
    GET  /admin/experiments/{name}/plot.png    the metrics over time (?since=)
    POST /admin/experiments/{name}/promote     {"arm": "b"}: that arm takes all of the experiment's traffic
    POST /admin/experiments/{name}/rollback    control takes all of it
    POST /admin/experiments/{name}/stop        the experiment ends (no request is assigned); {"arm": "b"}: one arm
    POST /admin/experiments/{name}/resume      running again with the configured weights, no arm stopped
    POST /admin/experiments/{name}/weights     {"weights": {"a": 50, "b": 50}}
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine import _experiment_report as report_mod
from engine.errors import RequestError
from engine.export import parse_time

if TYPE_CHECKING:
    from engine.admin import Admin

_json = msgspec.json.Encoder()


def _ok(data: Any, status: int = 200) -> Response:
    return Response(_json.encode(data), status_code=status, media_type="application/json")


def _actor(request: Request) -> str:
    return str(getattr(request.state, "actor", None) or "admin")


def _since(request: Request) -> float | None:
    raw = request.query_params.get("since")
    return parse_time(raw, param="since") if raw else None


def report(engine: Any, name: str, since: float | None = None) -> dict[str, Any]:
    """The report of ``name`` from the ledger (rows flushed first by the caller)."""
    exps = engine.experiments
    exps.refresh()
    cfg = exps.config(name)
    return report_mod.build(engine.ledger, name, control=cfg.control, arms=[a.name for a in cfg.arms],
                            shares=exps.weights(name), alpha=cfg.alpha, since=since, state=exps.state(name))


class ExperimentRoutes:
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.engine = admin.engine

    async def _body(self, request: Request) -> dict[str, Any]:
        data = await self.admin.json_body(request, empty={})
        if not isinstance(data, dict):
            raise RequestError("body must be a JSON object")
        return data

    @staticmethod
    def _arm(data: dict[str, Any], required: bool) -> str | None:
        arm = data.get("arm")
        if arm is None and not required:
            return None
        if not isinstance(arm, str) or not arm:
            raise RequestError('body must name the arm: {"arm": "<arm name>"}', param="arm")
        return arm

    async def list(self, request: Request) -> Response:
        exps = self.engine.experiments
        await asyncio.to_thread(exps.refresh)
        return _ok({"data": exps.list()})

    async def create(self, request: Request) -> Response:
        data = await self._body(request)
        cfg = await asyncio.to_thread(self.engine.experiments.create, data, _actor(request))
        return _ok(self.engine.experiments.describe(cfg.name), status=201)

    async def get(self, request: Request) -> Response:
        name = request.path_params["name"]
        since = _since(request)
        self.engine.experiments.config(name)  # 404 before any work
        await self.engine.flush()
        rep = await asyncio.to_thread(report, self.engine, name, since)
        out = self.engine.experiments.describe(name)
        out["report"] = report_mod.as_builtins(rep)
        return _ok(out)

    async def plot(self, request: Request) -> Response:
        name = request.path_params["name"]
        since = _since(request)
        cfg = self.engine.experiments.config(name)
        await self.engine.flush()

        def draw() -> bytes:
            with tempfile.TemporaryDirectory() as d:
                out = report_mod.plot(self.engine.ledger, name, [a.name for a in cfg.arms], Path(d) / "p.png",
                                      since=since)
                return out.read_bytes()

        return Response(await asyncio.to_thread(draw), media_type="image/png")

    async def promote(self, request: Request) -> Response:
        name, arm = request.path_params["name"], self._arm(await self._body(request), True)
        assert arm is not None
        await asyncio.to_thread(self.engine.experiments.promote, name, arm, _actor(request))
        return _ok(self.engine.experiments.describe(name))

    async def rollback(self, request: Request) -> Response:
        name = request.path_params["name"]
        await asyncio.to_thread(self.engine.experiments.rollback, name, _actor(request))
        return _ok(self.engine.experiments.describe(name))

    async def stop(self, request: Request) -> Response:
        name, arm = request.path_params["name"], self._arm(await self._body(request), False)
        await asyncio.to_thread(self.engine.experiments.stop, name, arm, _actor(request))
        return _ok(self.engine.experiments.describe(name))

    async def resume(self, request: Request) -> Response:
        name = request.path_params["name"]
        await asyncio.to_thread(self.engine.experiments.resume, name, _actor(request))
        return _ok(self.engine.experiments.describe(name))

    async def weights(self, request: Request) -> Response:
        name, data = request.path_params["name"], await self._body(request)
        weights = data.get("weights")
        if not isinstance(weights, dict) or not weights:
            raise RequestError('body must be {"weights": {"<arm>": <number>, ...}}', param="weights")
        await asyncio.to_thread(self.engine.experiments.set_weights, name, weights, _actor(request))
        return _ok(self.engine.experiments.describe(name))


def experiment_routes(admin: Admin) -> list[Route]:
    r = ExperimentRoutes(admin)
    g = admin.guarded
    base = "/admin/experiments"
    return [
        Route(base, g(r.list), methods=["GET"]),
        Route(base, g(r.create), methods=["POST"]),
        Route(base + "/{name}", g(r.get), methods=["GET"]),
        Route(base + "/{name}/plot.png", g(r.plot), methods=["GET"]),
        Route(base + "/{name}/promote", g(r.promote), methods=["POST"]),
        Route(base + "/{name}/rollback", g(r.rollback), methods=["POST"]),
        Route(base + "/{name}/stop", g(r.stop), methods=["POST"]),
        Route(base + "/{name}/resume", g(r.resume), methods=["POST"]),
        Route(base + "/{name}/weights", g(r.weights), methods=["POST"]),
    ]
