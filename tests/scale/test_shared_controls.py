"""Run-time controls made through one replica's admin API reach every replica on the same Redis (real
redis-server, 3 real proxies): applied live, written to each replica's overlay file, audited there with the
replica they came from; two replicas changing different settings at once both keep theirs; a replica that
starts later adopts them; a change made while Redis is down reaches the others when it answers."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from scale_support import ADMIN_KEY, AUTH, chat, replica_config, tenants, until

from bench._redis_cluster import Cluster, RedisServer, Replica
from bench.fake_upstream import FakeUpstream
from engine import Engine

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
_until = functools.partial(until, timeout=5.0, poll_s=0.02)  # each poll is an HTTP call


def _settings(h: httpx.Client, url: str) -> dict[str, Any]:
    r = h.get(url + "/admin/controls", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["settings"]


def _patch(h: httpx.Client, url: str, body: dict[str, Any]) -> list[str]:
    r = h.patch(url + "/admin/controls", headers=ADMIN, json=body)
    assert r.status_code == 200, r.text
    return r.json()["changed"]


def _hard(settings: dict[str, Any]) -> Any:
    return ((settings["tenants"]["acme"].get("budget") or {}).get("daily_usd") or {}).get("hard")


def test_a_change_on_one_replica_reaches_all_of_them(redis_server: RedisServer, upstream: FakeUpstream,
                                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_SCALE_ADMIN_KEY", ADMIN_KEY)
    configs = [replica_config(tmp_path, i, upstream, redis_server.url, tenants=tenants()) for i in range(4)]
    with Cluster(configs[:3]) as cluster, httpx.Client(timeout=10) as h:
        a, b, c = cluster.urls
        assert h.post(c + "/v1/chat/completions", headers=AUTH, json=chat("hello there")).headers[
            "x-thrifty-cache"] == "miss"
        assert _patch(h, a, {"cache": {"mode": "off"}}) == ["cache.mode"]
        took = max(_until(lambda u=u: _settings(h, u)["cache"]["mode"] == "off") for u in (b, c))  # type: ignore[misc]
        # C obeys it: the same prompt is no longer answered from its cache
        r = h.post(c + "/v1/chat/completions", headers=AUTH, json=chat("hello there"))
        assert r.status_code == 200 and r.headers["x-thrifty-cache"] == "bypass"
        # written to B's own overlay file (it survives B's restart) and audited on B as A's change
        b_engine = cluster[1].engine
        overlay = yaml.safe_load((Path(configs[1]["data_dir"]) / "overlay.yaml").read_text())
        assert overlay == {"cache": {"mode": "off"}}
        events = h.get(b + "/admin/audit", headers=ADMIN).json()["data"]
        a_replica = cluster[0].engine.state.replica
        assert [(e["action"], e["target"], e["old"], e["new"]) for e in events] == [
            ("config.set", "cache.mode", "on", "off")]
        assert events[0]["actor"] == f"admin-key (replica {a_replica})"
        assert len(h.get(a + "/admin/audit", headers=ADMIN).json()["data"]) == 1  # A audited its own, once

        # Two replicas change different settings at the same moment: both are kept, everywhere.
        _patch(h, b, {"tenants": {"acme": {"budget": {"daily_usd": {"soft": 1, "hard": 2}}}}})
        _patch(h, c, {"routing": {"policy": "cost"}})
        for u in (a, b, c):
            _until(lambda u=u: _hard(_settings(h, u)) == 2 and _settings(h, u)["routing"]["policy"] == "cost")  # type: ignore[misc]
        assert b_engine.settings.raw.routing.policy == "cost"

        # A replica that starts later adopts every change made before it.
        late = Replica(Engine.from_config(configs[3]))
        try:
            s = _until(lambda: _settings(h, late.url)["cache"]["mode"] == "off"
                       and _hard(_settings(h, late.url)) == 2)
        finally:
            late.stop()
        print(f"controls: a change on A applied on B and C in {took * 1000:.0f} ms; a late replica adopted "
              f"all in {s * 1000:.0f} ms")


def test_a_change_made_while_redis_is_down_reaches_the_others_when_it_answers(
        redis_server: RedisServer, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_SCALE_ADMIN_KEY", ADMIN_KEY)
    configs = [replica_config(tmp_path, i, upstream, redis_server.url, tenants=tenants()) for i in range(2)]
    with Cluster(configs) as cluster, httpx.Client(timeout=10) as h:
        a, b = cluster.urls
        _patch(h, a, {"routing": {"policy": "quality"}})
        _until(lambda: _settings(h, b)["routing"]["policy"] == "quality")
        redis_server.kill()
        _until(lambda: h.get(a + "/healthz").json().get("state") == "degraded"
               or not cluster[0].engine.state.conn.up)
        assert _patch(h, a, {"cache": {"ttl_s": 600}}) == ["cache.ttl_s"]  # applies on A at once
        assert _settings(h, a)["cache"]["ttl_s"] == 600
        time.sleep(1.5)
        assert _settings(h, b)["cache"]["ttl_s"] != 600  # B cannot know yet
        redis_server.start()  # back, and empty
        _until(lambda: _settings(h, b)["cache"]["ttl_s"] == 600, timeout=10)
        # B kept what it had before the outage: the empty Redis held only A's waiting change
        assert _settings(h, b)["routing"]["policy"] == "quality"


def test_a_budget_added_at_run_time_counts_every_replicas_spend_before_it(
        redis_server: RedisServer, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A daily budget set through replica A in the afternoon counts the morning's spend of A *and* B (each
    replica brings its own part up to its own ledger, once: its two catch-ups are one)."""
    monkeypatch.setenv("THRIFTY_SCALE_ADMIN_KEY", ADMIN_KEY)
    configs = [replica_config(tmp_path, i, upstream, redis_server.url, tenants=tenants()) for i in range(2)]
    with Cluster(configs) as cluster, httpx.Client(timeout=10) as h:
        a, b = cluster.urls
        costs = []
        for i, url in enumerate([a, b, b, a, b]):  # the morning: no budget, nothing counts it
            r = h.post(url + "/v1/chat/completions", headers={**AUTH, "x-thrifty-cache-mode": "off"},
                       json=chat(f"Morning question {i}"))
            assert r.status_code == 200, r.text
            costs.append(float(r.headers["x-thrifty-cost-usd"]))
        assert sum(costs) > 0
        _patch(h, a, {"tenants": {"acme": {"budget": {"daily_usd": {"hard": 100}}}}})

        def daily(url: str) -> float:
            rows = h.get(url + "/admin/budgets", headers=ADMIN).json()
            return next((r["spend_usd"] for r in rows if r["subject"] == "tenant:acme" and r["period"] == "daily"),
                        -1.0)

        _until(lambda: daily(b) >= 0)  # B has adopted the budget (and caught up)
        _until(lambda: abs(daily(a) - sum(costs)) < 1e-6)
        assert daily(b) == pytest.approx(sum(costs), abs=1e-6)
        # A second catch-up (another worker of the data dir, or the change seen again) adds nothing.
        for replica in cluster.replicas:
            replica.engine.budgets.catch_up(["tenant:acme"], replica.engine._spend_of)
        assert daily(a) == pytest.approx(sum(costs), abs=1e-6)


def test_experiment_changes_and_new_experiments_reach_every_replica(
        redis_server: RedisServer, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A promotion through A sends every user on B to the winner; an experiment created through B runs on A;
    a replica that starts later takes both; B's audit names the replica each change came from."""
    monkeypatch.setenv("THRIFTY_SCALE_ADMIN_KEY", ADMIN_KEY)
    exp = {"name": "w", "control": "a", "stickiness": "user",
           "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "model": "gpt-4o"}]}
    configs = [replica_config(tmp_path, i, upstream, redis_server.url, tenants=tenants(), experiments=[exp],
                              cache={"encoder": "hashing", "mode": "off"}) for i in range(3)]

    def models(h: httpx.Client, url: str, n: int = 16) -> set[str]:
        return {h.post(url + "/v1/chat/completions", headers=AUTH, json={**chat("hi", "gpt-4o-mini"), "user": f"u{i}"})
                .headers["x-thrifty-model"] for i in range(n)}

    def status(h: httpx.Client, url: str, name: str) -> str | None:
        r = h.get(url + "/admin/experiments", headers=ADMIN)
        return next((e["state"].get("status", "running") for e in r.json()["data"] if e["name"] == name), None) \
            if r.status_code == 200 else None

    with Cluster(configs[:2]) as cluster, httpx.Client(timeout=10) as h:
        a, b = cluster.urls
        assert models(h, b) == {"gpt-4o-mini", "gpt-4o"}  # both arms serve on B
        r = h.post(a + "/admin/experiments/w/promote", headers=ADMIN, json={"arm": "b"})
        assert r.status_code == 200, r.text
        took = _until(lambda: status(h, b, "w") == "promoted")
        assert models(h, b) == {"gpt-4o"}  # every user on B now gets the winner
        events = h.get(b + "/admin/audit", headers=ADMIN, params={"action": "experiment."}).json()["data"]
        assert [(e["action"], e["actor"]) for e in events] == [
            ("experiment.replicated", f"replica {cluster[0].engine.state.replica}")]

        made = {"name": "cheap", "control": "a", "stickiness": "user",
                "arms": [{"name": "a", "weight": 0}, {"name": "b", "weight": 1, "model": "gpt-4o"}],
                "target": {"tenants": ["nobody"]}}
        assert h.post(b + "/admin/experiments", headers=ADMIN, json=made).status_code == 201
        _until(lambda: status(h, a, "cheap") == "running")
        # A newer change wins wherever it was made: resume on B after the promotion on A
        assert h.post(b + "/admin/experiments/w/resume", headers=ADMIN).status_code == 200
        _until(lambda: status(h, a, "w") == "running")

        late = Replica(Engine.from_config(configs[2]))
        try:
            _until(lambda: status(h, late.url, "cheap") == "running" and status(h, late.url, "w") == "running")
        finally:
            late.stop()
        print(f"experiments: a promotion on A reached B in {took * 1000:.0f} ms")


def test_feedback_on_a_request_served_by_another_replica(
        redis_server: RedisServer, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind a load balancer the rating reaches any replica: B withdraws the answer A served (from every
    replica), A refuses a second rating, and another tenant's key cannot rate it."""
    monkeypatch.setenv("THRIFTY_SCALE_ADMIN_KEY", ADMIN_KEY)
    two = {**tenants(), "globex": {"keys": [{"name": "globex-1", "key": "sk-globex"}]}}
    configs = [replica_config(tmp_path, i, upstream, redis_server.url, tenants=two) for i in range(2)]
    with Cluster(configs) as cluster, httpx.Client(timeout=10) as h:
        a, b = cluster.urls
        ask = chat("Which port does PostgreSQL listen on by default?")
        assert h.post(a + "/v1/chat/completions", headers=AUTH, json=ask).headers["x-thrifty-cache"] == "miss"
        _until(lambda: h.post(a + "/v1/chat/completions", headers=AUTH, json=ask).headers["x-thrifty-cache"]
               == "exact")
        served = h.post(a + "/v1/chat/completions", headers=AUTH, json=ask)
        assert served.headers["x-thrifty-cache"] == "exact"
        rid = served.headers["x-thrifty-request-id"]
        _until(lambda: cluster[1].engine.cache.stats().entries == 1)  # replicated to B
        cluster[0].engine.state.feedback_index.flush()

        bad = {"request_id": rid, "rating": "bad"}
        other = h.post(b + "/v1/feedback", headers={"authorization": "Bearer sk-globex"}, json=bad)
        assert other.status_code == 404, other.text
        r = h.post(b + "/v1/feedback", headers=AUTH, json=bad)
        assert r.status_code == 200, r.text
        assert r.json()["withdrawn"] is True
        again = h.post(a + "/v1/feedback", headers=AUTH, json=bad)
        assert again.status_code == 409, again.text
        # withdrawn from every replica (B deleted it, A applied B's delete): asked again, a fresh answer
        _until(lambda: [r.engine.cache.stats().entries for r in cluster.replicas] == [0, 0])
        assert h.post(a + "/v1/chat/completions", headers=AUTH, json=ask).headers["x-thrifty-cache"] == "miss"
        labels = cluster[1].engine.ledger.query("SELECT request_id, good FROM labels WHERE source = 'feedback'")
        assert labels == [{"request_id": rid, "good": 0}]
