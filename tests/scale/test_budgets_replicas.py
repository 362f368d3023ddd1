"""One hard daily budget enforced by 3 replicas on one Redis, under 64 concurrent clients."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import httpx
import msgspec
import pytest
from scale_support import AUTH, chat, replica_config, tenants

from bench._redis_cluster import Cluster, RedisServer
from bench.fake_upstream import FakeUpstream, Reply
from router.types import ChatRequest, ThriftyOptions, Usage

USAGE = Usage(prompt_tokens=400, completion_tokens=300, total_tokens=700)  # gpt-4o: $0.004 a request
HARD = 0.5
CLIENTS = 64


async def _load(urls: list[str], n: int) -> list[httpx.Response]:
    rr = itertools.cycle(urls)
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait((i, next(rr)))
    out: list[httpx.Response] = []

    async def client(h: httpx.AsyncClient) -> None:
        while not queue.empty():
            i, url = queue.get_nowait()
            out.append(await h.post(url + "/v1/chat/completions", json=chat(f"Spend question {i}"),
                                    headers={**AUTH, "x-thrifty-cache-mode": "off"}))

    limits = httpx.Limits(max_connections=CLIENTS * 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as h:
        await asyncio.gather(*(client(h) for _ in range(CLIENTS)))
    return out


def test_three_replicas_never_overshoot_by_more_than_the_requests_in_flight(
        redis_server: RedisServer, upstream: FakeUpstream, tmp_path: Path) -> None:
    budget = {"daily_usd": {"hard": HARD}, "on_hard": "reject"}
    configs = [replica_config(tmp_path, i, upstream, redis_server.url, tenants=tenants(budget=budget))
               for i in range(3)]
    upstream.script(*[Reply(usage=USAGE, delay=0.03)] * 600)
    with Cluster(configs) as cluster:
        # What each request reserves before dispatch: the expected cost of its dearest candidate.
        e = cluster[0].engine
        decision = e.rank(msgspec.convert(chat("Spend question 100"), ChatRequest), None, tenant="acme",
                          options=ThriftyOptions(), policy=None)
        expected = max(c.expected_cost_usd for c in decision.candidates)
        responses = asyncio.run(_load(cluster.urls, 400))
        for r in cluster.replicas:
            r.engine.ledger.flush()
            r.engine.budgets.flush()
        statuses = {r.status_code for r in responses}
        assert statuses <= {200, 429}, statuses
        paid = [float(r.headers["x-thrifty-cost-usd"]) for r in responses if r.status_code == 200]
        rejected = [r for r in responses if r.status_code == 429]
        assert rejected and all(r.json()["error"]["type"] == "budget_exceeded" for r in rejected)
        spend = sum(paid)
        # Admitted only while settled + reserved spend was under the limit: the overshoot is what was in flight.
        assert HARD <= spend <= HARD + CLIENTS * expected, (spend, expected)
        # Without shared counters each replica would have let the tenant spend its whole limit.
        assert spend < 2 * HARD
        ledgers = sum(r.engine.ledger.spend(tenant="acme") for r in cluster.replicas)
        assert round(ledgers, 2) == round(spend, 2)
        assert ledgers == pytest.approx(spend, abs=1e-9)
        # The shared counter holds exactly the settled spend once nothing is in flight.
        state = {(s.subject, s.period): s for s in cluster[0].engine.budgets.states()}
        assert state[("tenant:acme", "daily")].spend_usd == pytest.approx(spend, abs=1e-6)
        assert state[("tenant:acme", "daily")].status == "reject"
