"""The usage ledger (SQLite WAL) and budgets: real files, real writer threads, several writers."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sqlite3
import time
from pathlib import Path

import pytest

from engine.budgets import BudgetConfig, BudgetTracker, Limit, LocalBudgetStore, Verdict
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


def _tracker(tmp_path: Path, budgets: dict, owner: str = "1-me", ttl_s: float = 60.0, **kw) -> BudgetTracker:
    return BudgetTracker(budgets, store_factory=lambda: LocalBudgetStore(
        tmp_path / "budgets.sqlite3", owner=owner, ttl_s=ttl_s), **kw)


def test_budget_soft_then_hard(tmp_path: Path) -> None:
    warned = []
    tracker = _tracker(tmp_path, {"tenant:acme": BudgetConfig(daily_usd=Limit(soft=0.5, hard=1.0), on_hard="reject")},
                       on_warn=lambda *a: warned.append(a))
    verdict, r = asyncio.run(tracker.reserve("acme", None, 0.1))
    assert verdict.action == "ok" and r is not None
    tracker.settle(r, 0.6)
    tracker.flush()
    verdict, r = asyncio.run(tracker.reserve("acme", None, 0.1))
    assert verdict.action == "warn" and "soft limit" in verdict.message
    assert len(warned) == 1
    tracker.settle(r, 0.0)
    asyncio.run(tracker.reserve("acme", None, 0.0))
    assert len(warned) == 1  # warned once per window
    _, r = asyncio.run(tracker.reserve("acme", None, 0.1))
    tracker.settle(r, 0.4)
    tracker.flush()
    verdict, r = asyncio.run(tracker.reserve("acme", None, 0.1))
    assert verdict.action == "reject" and "hard limit" in verdict.message and r is None
    assert asyncio.run(tracker.reserve("other", None, 0.1)) == (Verdict("ok"), None)  # no budget: no work
    tracker.close()


def test_reservations_count_until_settled_and_across_trackers(tmp_path: Path) -> None:
    """Two trackers on one file (two workers): in-flight reservations of one stop the other at the limit."""
    budgets = {"key:team-a": BudgetConfig(monthly_usd=Limit(hard=1.0), on_hard="reject")}
    a, b = _tracker(tmp_path, budgets, owner=f"{os.getpid()}-a"), _tracker(tmp_path, budgets, owner=f"{os.getpid()}-b")
    held = [asyncio.run(a.reserve("acme", "team-a", 0.3))[1] for _ in range(4)]  # 1.2 in flight, admitted: 0.0 .. 0.9
    assert all(r is not None for r in held)
    verdict, r = asyncio.run(b.reserve("acme", "team-a", 0.3))
    assert verdict.action == "reject" and r is None  # nothing settled yet, but 1.2 is reserved
    for r in held:
        a.settle(r, 0.1)  # each cost less than expected: the reservations give the room back
    a.flush()
    verdict, r = asyncio.run(b.reserve("acme", "team-a", 0.3))
    assert verdict.action == "ok" and r is not None
    states = b.states()
    assert states[0].subject == "key:team-a" and states[0].spend_usd == pytest.approx(0.7)  # 0.4 + 0.3 reserved
    a.close()
    b.close()


def test_dead_process_reservations_expire(tmp_path: Path) -> None:
    budgets = {"tenant:acme": BudgetConfig(daily_usd=Limit(hard=1.0), on_hard="downgrade")}
    dead = _tracker(tmp_path, budgets, owner="999999999-dead")  # no such pid
    _, r = asyncio.run(dead.reserve("acme", None, 5.0))
    assert r is not None
    dead._pool.shutdown()  # type: ignore[union-attr]  # the process "dies" without settling
    alive = _tracker(tmp_path, budgets, owner=f"{os.getpid()}-alive")
    verdict, _ = asyncio.run(alive.reserve("acme", None, 0.1))
    assert verdict.action == "ok"  # the dead owner's 5.0 was dropped on open
    short = _tracker(tmp_path / "short", budgets, owner=f"{os.getpid()}-x", ttl_s=0.0)
    asyncio.run(short.reserve("acme", None, 5.0))
    time.sleep(0.01)
    verdict, _ = asyncio.run(short.reserve("acme", None, 0.1))
    assert verdict.action == "ok"  # an expired reservation no longer counts
    alive.close()
    short.close()


OLD_SCHEMA = """CREATE TABLE requests (request_id TEXT PRIMARY KEY, ts REAL NOT NULL, day TEXT NOT NULL,
month TEXT NOT NULL, tenant TEXT NOT NULL, virtual_key TEXT, worker TEXT, route TEXT, model TEXT, provider TEXT,
task TEXT, stream INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0,
completion_tokens INTEGER NOT NULL DEFAULT 0, cached_tokens INTEGER NOT NULL DEFAULT 0,
reasoning_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0, cost_estimated INTEGER NOT NULL DEFAULT 0,
saved_usd REAL NOT NULL DEFAULT 0, cache TEXT NOT NULL, status INTEGER NOT NULL, error_class TEXT,
latency_ms REAL NOT NULL DEFAULT 0, overhead_ms REAL NOT NULL DEFAULT 0, stages TEXT,
attempts INTEGER NOT NULL DEFAULT 0, budget_action TEXT, prompt TEXT, answer TEXT)"""


def test_old_ledger_file_is_migrated_without_losing_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(OLD_SCHEMA)
    conn.executemany("INSERT INTO requests (request_id, ts, day, month, tenant, cache, status, cost_usd) "
                     "VALUES (?, 0, '2026-01-01', '2026-01', 'acme', 'miss', 200, 0.5)", [("client-1",), ("client-2",)])
    conn.commit()
    conn.close()
    ledger = Ledger(path)
    ledger.record(_rec(0, request_id="server-1", client_request_id="client-1"))  # the same client id again
    ledger.flush()
    rows = ledger.query("SELECT request_id, client_request_id FROM requests ORDER BY request_id")
    assert rows == [{"request_id": "client-1", "client_request_id": None},
                    {"request_id": "client-2", "client_request_id": None},
                    {"request_id": "server-1", "client_request_id": "client-1"}]
    ledger.close()


def test_a_row_is_never_replaced(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    ledger.record(_rec(0, request_id="same", tenant="acme", cost_usd=1.0))
    ledger.flush()
    ledger.record(_rec(0, request_id="same", tenant="mallory", cost_usd=0.0))  # a second row under one key
    ledger.flush()
    assert ledger.query("SELECT tenant, cost_usd FROM requests") == [{"tenant": "acme", "cost_usd": 1.0}]
    ledger.close()


def _record_and_die(path: str, n: int) -> None:
    ledger = Ledger(path, flush_interval=3600.0)  # the writer never gets to commit: only the journal has them
    for i in range(n):
        ledger.record(_rec(i, request_id=f"dying-{i}"))
    os._exit(0)  # no close(), no flush: as abrupt as a SIGKILL for the ledger


def test_rows_of_a_killed_process_are_replayed_from_its_journal(tmp_path: Path) -> None:
    path = str(tmp_path / "l.db")
    Ledger(path).close()
    p = mp.get_context("spawn").Process(target=_record_and_die, args=(path, 50))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 0
    ledger = Ledger(path)  # opening replays the journal of the dead process
    assert ledger.query("SELECT COUNT(*) AS n FROM requests") == [{"n": 50}]
    assert not list((tmp_path / "l.db.journal").glob("*.jrn"))
    ledger.close()
    again = Ledger(path)  # replay is idempotent: nothing left, nothing doubled
    assert again.query("SELECT COUNT(*) AS n FROM requests") == [{"n": 50}]
    again.close()


def test_journal_segments_are_reused_and_a_cut_record_reads_as_the_end(tmp_path: Path) -> None:
    from engine import _journal

    journal = _journal.Journal(tmp_path, "7-owner")
    first = journal.current
    for i in range(3):
        assert journal.append(b"row %d" % i) is None
    assert _journal.read_records(first.path) == [b"row 0", b"row 1", b"row 2"]
    drained = journal.swap(journal.next_segment())
    journal.recycle(drained)  # its rows landed: emptied and kept as the spare
    assert _journal.read_records(first.path) == []
    assert journal.next_segment() is first
    first.append(b"new")
    assert _journal.read_records(first.path) == [b"new"]  # the older, longer records behind it are not read
    # A kill between the payload copy and the length write leaves the end mark in place.
    first.mm[first.pos + 4:first.pos + 9] = b"torn!"
    assert _journal.read_records(first.path) == [b"new"]
    journal.close(drop=True)


def test_spend_survives_a_restart_and_a_new_counters_file_is_seeded_once(tmp_path: Path) -> None:
    budgets = {"tenant:acme": BudgetConfig(daily_usd=Limit(hard=1.0), on_hard="reject")}
    day = time.strftime("%Y-%m-%d", time.gmtime())
    seeded = []

    def seed() -> list[tuple[str, str, str, float]]:
        seeded.append(1)
        return [("tenant:acme", "daily", day, 0.75)]  # what an older ledger already holds

    def tracker() -> BudgetTracker:
        return BudgetTracker(budgets, store_factory=lambda: LocalBudgetStore(
            tmp_path / "b.sqlite3", owner=f"{os.getpid()}-x", ttl_s=60, seed=seed))

    first = tracker()
    _, r = asyncio.run(first.reserve("acme", None, 0.1))
    first.settle(r, 0.25)
    first.close()  # a restart
    second = tracker()
    verdict, r = asyncio.run(second.reserve("acme", None, 0.1))
    assert verdict.action == "reject" and r is None  # 0.75 seeded + 0.25 settled: the limit holds
    assert seeded == [1]  # seeded when the file was new, never again
    second.close()
