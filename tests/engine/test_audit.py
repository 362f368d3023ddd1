"""The audit log: events committed at once, newest first, paged, filtered, shared by two handles on one
file (two worker processes), and GET /admin/audit behind the admin key with 400s naming the parameter."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from engine_support import base_config

from bench.fake_upstream import FakeUpstream
from engine.audit import AuditLog

ADMIN = "admin-secret-audit"
AUTH = {"authorization": f"Bearer {ADMIN}"}


def test_record_recent_paging_and_filter(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.sqlite3")
    other = AuditLog(tmp_path / "audit.sqlite3")  # another worker on the same file
    first = log.record("admin-key", "budget.set", "tenant:acme", {"daily_usd": 5}, {"daily_usd": 10})
    other.record("admin:ab12", "cache.mode", "namespace:docs", "on", "off", detail="from the dashboard")
    log.record("admin-key", "experiment.promote", "exp:cheap", None, {"arm": "b"})
    rows = log.recent()
    assert [r.action for r in rows] == ["experiment.promote", "cache.mode", "budget.set"]
    assert rows[2] == first and rows[2].old == {"daily_usd": 5} and rows[2].new == {"daily_usd": 10}
    assert rows[1].detail == "from the dashboard" and rows[1].actor == "admin:ab12"
    assert [r.action for r in log.recent(limit=1, before_ts=rows[1].ts)] == ["budget.set"]
    assert [r.target for r in other.recent(action_prefix="experiment.")] == ["exp:cheap"]
    log.close()
    other.close()
    assert len(AuditLog(tmp_path / "audit.sqlite3").recent()) == 3  # durable across a reopen


def test_admin_route(serve, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    live, engine = serve(base_config(tmp_path, upstream))
    for i in range(3):
        engine.audit.record("admin-key", "routing.rules", "routing", i, i + 1)
    with httpx.Client(base_url=live.url) as h:
        assert h.get("/admin/audit").status_code == 401
        assert h.get("/admin/audit", headers={"authorization": "Bearer nope"}).status_code == 401
        page = h.get("/admin/audit", params={"limit": "2"}, headers=AUTH).json()
        assert [r["new"] for r in page["data"]] == [3, 2] and page["next_before"] == page["data"][-1]["ts"]
        rest = h.get("/admin/audit", params={"before": str(page["next_before"])}, headers=AUTH).json()
        assert [r["new"] for r in rest["data"]] == [1] and rest["next_before"] is None
        for params, needle in (({"limit": "x"}, "limit"), ({"limit": "0"}, "limit"), ({"before": "soon"}, "before")):
            r = h.get("/admin/audit", params=params, headers=AUTH)
            assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text
