"""The usage ledger (SQLite WAL) and budgets: real files, real writer threads, several writers."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from engine.budgets import BudgetConfig, BudgetTracker, Limit
from engine.ledger import Ledger, UsageRecord


def _rec(i: int, **kw) -> UsageRecord:
    base = dict(request_id=f"r{i}", ts=time.time(), tenant="acme", cache="miss", status=200,
                model="gpt-4o-mini", provider="openai", cost_usd=0.001, prompt_tokens=10, completion_tokens=5)
    base.update(kw)
    return UsageRecord(**base)


def test_rows_land_and_aggregate(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    for i in range(100):
        ledger.record(_rec(i, cache="hit" if i % 4 == 0 else "miss", saved_usd=0.002 if i % 4 == 0 else 0.0))
    ledger.flush()
    s = ledger.summary()
    assert s["totals"]["requests"] == 100
    assert s["totals"]["hits"] == 25
    assert s["totals"]["hit_rate"] == pytest.approx(0.25)
    assert s["totals"]["spend_usd"] == pytest.approx(0.1)
    assert s["totals"]["saved_usd"] == pytest.approx(0.05)
    assert s["by_model"][0]["key"] == "gpt-4o-mini"
    assert "latency_p99" in s["latency_ms"]
    ledger.close()


def test_content_is_dropped_unless_enabled(tmp_path: Path) -> None:
    off = Ledger(tmp_path / "off.db")
    off.record(_rec(1, prompt="secret prompt", answer="secret answer"))
    off.flush()
    assert off.query("SELECT prompt, answer FROM requests") == [{"prompt": None, "answer": None}]
    on = Ledger(tmp_path / "on.db", log_content=True)
    on.record(_rec(1, prompt="p", answer="a"))
    on.flush()
    assert on.query("SELECT prompt, answer FROM requests") == [{"prompt": "p", "answer": "a"}]
    off.close()
    on.close()


def _writer(path: str, start: int) -> None:
    ledger = Ledger(path)
    for i in range(start, start + 200):
        ledger.record(_rec(i, worker=f"w{start}"))
    ledger.close()


def test_several_processes_share_one_ledger(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    Ledger(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, k * 1000)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ledger = Ledger(path)
    assert ledger.summary()["totals"]["requests"] == 600
    assert ledger.spend(tenant="acme") == pytest.approx(0.6)
    assert ledger.spend(tenant="acme", exclude_worker="w0") == pytest.approx(0.4)
    ledger.close()


def test_budget_soft_then_hard() -> None:
    warned = []
    tracker = BudgetTracker(
        {"tenant:acme": BudgetConfig(daily_usd=Limit(soft=0.5, hard=1.0), on_hard="reject")},
        worker="me", on_warn=lambda *a: warned.append(a),
    )
    assert tracker.check("acme", None).action == "ok"
    tracker.add("acme", None, 0.6)
    v = tracker.check("acme", None)
    assert v.action == "warn" and "soft limit" in v.message
    assert len(warned) == 1
    tracker.check("acme", None)
    assert len(warned) == 1  # warned once per window
    tracker.add("acme", None, 0.4)
    v = tracker.check("acme", None)
    assert v.action == "reject" and "hard limit" in v.message
    assert tracker.check("other", None).action == "ok"


def test_budget_downgrade_and_key_budgets_and_other_workers() -> None:
    others = {"x": 0.0}
    tracker = BudgetTracker(
        {"key:team-a": BudgetConfig(monthly_usd=Limit(hard=2.0), on_hard="downgrade")},
        worker="me", read_spend=lambda *a: others["x"], refresh_s=0.0,
    )
    tracker.add("acme", "team-a", 1.5)
    assert tracker.check("acme", "team-a").action == "ok"
    others["x"] = 0.6  # another worker's spend, read from the shared ledger
    assert tracker.check("acme", "team-a").action == "downgrade"
    states = tracker.states()
    assert states[0].subject == "key:team-a" and states[0].spend_usd == pytest.approx(2.1)
