"""Budgets end to end: a tenant driven past its soft and hard limits through the proxy."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from engine_support import base_config

from bench.fake_upstream import FakeUpstream, Reply
from router.types import Usage

BIG = Usage(prompt_tokens=1000, completion_tokens=1000, total_tokens=2000)


def _tenant(on_hard: str) -> dict:
    return {"acme": {"keys": [{"name": "acme-1", "key": "sk-acme"}],
                     "budget": {"daily_usd": {"soft": 0.02, "hard": 0.05}, "on_hard": on_hard}}}


def _ask(h: httpx.Client, n: int, model: str = "gpt-4o") -> httpx.Response:
    return h.post("/v1/chat/completions", headers={"authorization": "Bearer sk-acme"},
                  json={"model": model, "messages": [{"role": "user", "content": f"Budget question number {n}?"}]})


def test_soft_warning_then_hard_reject_and_ledger_agrees(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = serve(base_config(tmp_path, upstream, tenants=_tenant("reject")))
    upstream.script(*[Reply(usage=BIG)] * 10)
    costs, budget_headers, statuses = [], [], []
    with httpx.Client(base_url=live.url) as h:
        for n in range(6):
            r = _ask(h, n)
            statuses.append(r.status_code)
            if r.status_code == 200:
                costs.append(float(r.headers["x-thrifty-cost-usd"]))
                budget_headers.append(r.headers.get("x-thrifty-budget"))
            else:
                last = r
    # gpt-4o: 1000 x $2.50/M + 1000 x $10/M = $0.0125 a request
    assert costs[0] == pytest.approx(0.0125)
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert budget_headers[0] is None and budget_headers[1] is None
    assert budget_headers[2].startswith("warning") and "soft limit" in budget_headers[2]
    err = last.json()["error"]
    assert err["type"] == "budget_exceeded" and "hard limit" in err["message"]
    engine.ledger.flush()
    assert round(engine.ledger.spend(tenant="acme"), 2) == round(sum(costs), 2)
    assert engine.ledger.spend(tenant="acme") == pytest.approx(sum(costs), abs=1e-9)
    assert engine.ledger.spend(virtual_key="acme-1") == pytest.approx(sum(costs), abs=1e-9)
    states = {(s.subject, s.period): s for s in engine.budgets.states()}
    assert states[("tenant:acme", "daily")].status == "reject"


def test_hard_limit_downgrades_to_the_cheapest_model(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = serve(base_config(tmp_path, upstream, tenants=_tenant("downgrade")))
    upstream.script(*[Reply(usage=BIG)] * 4)
    with httpx.Client(base_url=live.url) as h:
        models = [_ask(h, n).headers["x-thrifty-model"] for n in range(4)]
        upstream.reset()
        r = _ask(h, 99)
    assert models == ["gpt-4o"] * 4
    assert r.status_code == 200
    assert r.headers["x-thrifty-budget"].startswith("downgraded")
    cheapest = min(
        (m for m in engine.catalog if any(route.provider == "fake" for route in m.routes)),
        key=lambda m: m.price.input + m.price.output,
    )
    assert r.headers["x-thrifty-model"] != "gpt-4o"
    chosen = engine.catalog.get(r.headers["x-thrifty-model"])
    assert chosen.price.input + chosen.price.output <= cheapest.price.input + cheapest.price.output * 1.5


def test_tokens_are_recorded_whenever_the_upstream_answered(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    """Issue 11: a bypassed cache (mode off, n > 1) recorded the cost but 0 tokens."""
    live, engine = serve(base_config(tmp_path, upstream))
    usage = Usage(prompt_tokens=321, completion_tokens=123, total_tokens=444)
    upstream.script(*[Reply(usage=usage)] * 3)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Count my tokens, please."}]}
    with httpx.Client(base_url=live.url) as h:
        off = h.post("/v1/chat/completions", json=body, headers={"x-thrifty-cache-mode": "off"})
        many = h.post("/v1/chat/completions", json={**body, "n": 2})
        miss = h.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "Other?"}]})
        hit = h.post("/v1/chat/completions", json={**body, "messages": [{"role": "user", "content": "Other?"}]})
    assert [r.headers["x-thrifty-cache"] for r in (off, many, miss, hit)] == ["bypass", "bypass", "miss", "exact"]
    engine.ledger.flush()
    rows = engine.ledger.query("SELECT cache, prompt_tokens, completion_tokens, cost_usd FROM requests ORDER BY ts")
    assert [(r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [(321, 123)] * 3 + [(0, 0)]
    assert all(r["cost_usd"] > 0 for r in rows[:3]) and rows[3]["cost_usd"] == 0
