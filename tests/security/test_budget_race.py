"""Budget races, as an attacker runs them: many clients of one tenant fire at once at ``thrifty serve
--workers 2`` (two processes sharing one data directory), against a hard daily limit.

Before issue 11 every worker checked the spend it had *settled* (its own, plus the others' from the ledger
a second late): 50 concurrent requests were all accepted, 7.5x the limit. Now each request reserves its
expected cost in budgets.sqlite3 before dispatch, in one ``BEGIN IMMEDIATE`` transaction with the check,
and settles the actual cost after. A request is admitted only while settled + reserved spend is under the
limit, so the spend can pass the limit by at most one request's expected cost (the requests in flight
when it was reached), as long as answers cost no more than their estimate (here: max_tokens bounds it).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from security_support import KEYS, PROVIDER_KEY, gateway_config
from served import Served

from bench.fake_upstream import FakeUpstream, Reply
from engine import Engine
from engine.ledger import Ledger
from router.types import ChatRequest, ThriftyOptions, Usage

LIMIT = 0.01  # USD, acme's hard daily limit
# gpt-4o at $2.50 / $10 per 1M tokens: 12 + 150 tokens = $0.00153 a request; 64 of them would be ~$0.098.
USAGE = Usage(prompt_tokens=12, completion_tokens=150, total_tokens=162)


def _body(n: int) -> dict[str, Any]:
    return {"model": "gpt-4o", "max_tokens": 200,
            "messages": [{"role": "user", "content": f"Budget race question number {n:03d}?"}]}


def _expected_cost(cfg: dict[str, Any]) -> float:
    """What the gateway reserves for one of these requests: the router's expected cost of the dearest
    candidate, computed by an engine of the same config in this process."""
    engine = Engine.from_config(cfg)
    try:
        costs = []
        for n in (0, 999):
            req = msgspec.convert(_body(n), ChatRequest)
            decision = engine.rank(req, None, tenant="acme", options=ThriftyOptions(), policy=None)
            costs.append(max(c.expected_cost_usd for c in decision.candidates))
        return max(costs)
    finally:
        asyncio.run(engine.aclose())
        engine.ledger.close()


@pytest.fixture(autouse=True)
def _provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_TEST_PROVIDER_KEY", PROVIDER_KEY)  # the served subprocess inherits it


def _race(upstream: FakeUpstream, tmp_path: Path, clients: int) -> dict[str, Any]:
    cfg = gateway_config(tmp_path / "data", upstream.url)
    cfg["tenants"]["acme"]["budget"] = {"daily_usd": {"hard": LIMIT}, "on_hard": "reject"}
    expected = _expected_cost(cfg)
    upstream.script(*[Reply(usage=USAGE, delay=0.05)] * clients)  # a little upstream time: real overlap
    server = Served(cfg, tmp_path, workers=2)
    start = threading.Barrier(clients)

    def one(n: int) -> httpx.Response:
        start.wait()
        return httpx.post(f"{server.url}/v1/chat/completions", json=_body(n), timeout=60,
                          headers={"authorization": f"Bearer {KEYS['acme']}", "x-thrifty-cache-mode": "off",
                                   "connection": "close"})

    try:
        server.wait_ready()
        with ThreadPoolExecutor(clients) as pool:
            responses = list(pool.map(one, range(clients)))
    finally:
        server.stop()
    ledger = Ledger(Path(cfg["data_dir"]) / "ledger.sqlite3")
    spend = ledger.spend(tenant="acme")
    rows = ledger.query("SELECT COUNT(*) AS n, COUNT(DISTINCT worker) AS workers FROM requests")[0]
    ledger.close()
    counters = sqlite3.connect(Path(cfg["data_dir"]) / "budgets.sqlite3")
    settled = counters.execute("SELECT usd FROM spend WHERE subject='tenant:acme' AND period='daily'").fetchone()[0]
    left = counters.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
    counters.close()
    return {"responses": responses, "spend": spend, "rows": rows, "settled": settled, "reserved_left": left,
            "expected": expected}


def _check(out: dict[str, Any], clients: int) -> None:
    statuses = [r.status_code for r in out["responses"]]
    assert set(statuses) <= {200, 429}, statuses
    ok = [r for r in out["responses"] if r.status_code == 200]
    assert ok and len(ok) < clients, statuses  # the limit bit, and not before some were served
    header_sum = sum(float(r.headers["x-thrifty-cost-usd"]) for r in ok)
    # The ledger equals what the responses said they cost, to the cent (and in fact to the float).
    assert round(out["spend"], 2) == round(header_sum, 2)
    assert out["spend"] == pytest.approx(header_sum, abs=1e-9)
    assert out["settled"] == pytest.approx(out["spend"], abs=1e-9)  # the budget counters agree
    assert out["reserved_left"] == 0  # every reservation was settled
    assert out["rows"]["n"] == clients  # rejected requests are in the ledger too
    overshoot = out["spend"] - LIMIT
    assert overshoot <= out["expected"] + 1e-12, (out["spend"], LIMIT, out["expected"])
    print(f"\nbudget race: {clients} clients, 2 workers, limit ${LIMIT}: {len(ok)} served, "
          f"{clients - len(ok)} rejected (429); spend ${out['spend']:.6f} = sum of x-thrifty-cost-usd "
          f"${header_sum:.6f}; overshoot ${max(overshoot, 0):.6f} <= one request's expected cost "
          f"${out['expected']:.6f}; rows written by {out['rows']['workers']} workers")


@pytest.mark.timeout(240)
def test_concurrent_clients_cannot_overshoot_a_hard_limit(upstream: FakeUpstream, tmp_path: Path) -> None:
    _check(_race(upstream, tmp_path, 16), 16)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sixty_four_concurrent_clients_two_workers(upstream: FakeUpstream, tmp_path: Path) -> None:
    _check(_race(upstream, tmp_path, 64), 64)
