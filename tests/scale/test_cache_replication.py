"""A cache write on one replica is served by the others; a purge on one removes it from all (real Redis)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from scale_support import ADMIN_KEY, AUTH, chat, replica_config, tenants, until

from bench._redis_cluster import Cluster, RedisServer
from bench.fake_upstream import FakeUpstream
from cache import scope as scope_of
from router.types import ChatRequest


def _exact(engine, prompt: str):  # type: ignore[no-untyped-def]
    import msgspec

    req = msgspec.convert(chat(prompt), ChatRequest)
    owner, ns = engine.space_of("acme", None)
    return engine.cache.lookup_exact(scope_of(req, namespace=ns, tenant=owner))


def test_write_on_a_is_a_hit_on_b_and_c_and_delete_or_purge_anywhere_removes_it_everywhere(
        redis_server: RedisServer, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_SCALE_ADMIN_KEY", ADMIN_KEY)
    configs = [replica_config(tmp_path, i, upstream, redis_server.url, tenants=tenants()) for i in range(3)]
    with Cluster(configs) as cluster:
        a, b, c = (r.engine for r in cluster.replicas)
        lags = []
        with httpx.Client(timeout=10) as h:
            for n in range(20):
                prompt = f"What is the capital of country number {n}?"
                r = h.post(cluster[0].url + "/v1/chat/completions", headers=AUTH, json=chat(prompt))
                assert r.status_code == 200 and r.headers["x-thrifty-cache"] == "miss"
                until(lambda p=prompt: _exact(a, p) is not None)  # A's own write (its store thread)
                lags.append(max(until(lambda p=prompt: _exact(b, p) is not None),
                                until(lambda p=prompt: _exact(c, p) is not None)))
            calls = len(upstream.requests)
            for replica in (cluster[1], cluster[2]):
                r = h.post(replica.url + "/v1/chat/completions", headers=AUTH, json=chat("What is the capital of country number 7?"))
                assert r.status_code == 200 and r.headers["x-thrifty-cache"] == "exact"
                assert r.headers["x-thrifty-cost-usd"] == "0.00000000"
            assert len(upstream.requests) == calls  # B and C answered from the replicated entry
            lags.sort()
            assert lags[-1] < 0.1, f"replication took {lags[-1] * 1000:.1f} ms (all: {lags})"

            # One entry withdrawn on C (as feedback does, through the cache's delete) leaves A and B too.
            gone = "What is the capital of country number 3?"
            entry_id = _exact(c, gone).id
            r = h.delete(f"{cluster[2].url}/admin/cache/entries/{entry_id}", headers={"authorization": f"Bearer {ADMIN_KEY}"})
            assert r.status_code == 200 and r.json()["deleted"] is True
            until(lambda: _exact(a, gone) is None and _exact(b, gone) is None)
            assert _exact(a, "What is the capital of country number 4?") is not None  # only that one

            r = h.post(cluster[1].url + "/admin/cache/purge", headers={"authorization": f"Bearer {ADMIN_KEY}"},
                       json={"tenant": "acme"})
            assert r.status_code == 200 and r.json()["purged"] == 19
            until(lambda: all(_exact(e, "What is the capital of country number 7?") is None for e in (a, b, c)))
            assert a.cache.stats().entries == c.cache.stats().entries == 0


def test_a_new_replica_catches_up_from_the_stream_and_a_snapshot(
        redis_server: RedisServer, upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg0 = replica_config(tmp_path, 0, upstream, redis_server.url, tenants=tenants())
    cfg0["state"]["snapshot_every"] = 5
    with Cluster([cfg0]) as first, httpx.Client(timeout=10) as h:
        for n in range(12):
            assert h.post(first[0].url + "/v1/chat/completions", headers=AUTH,
                          json=chat(f"Tell me fact number {n}")).status_code == 200
        first[0].engine.cache  # noqa: B018
        until(lambda: first[0].engine.state.replicator.published == 12)
        # the snapshot is written by the consumer after snapshot_every stream entries
        import redis

        r = redis.Redis.from_url(redis_server.url)
        until(lambda: r.hexists("thrifty:cache:snapshot", "id"), timeout=5)
        # A replica joining later, with the stream trimmed to nothing: the snapshot alone brings it up to date.
        r.xtrim("thrifty:cache:log", maxlen=0)
        with Cluster([replica_config(tmp_path, 1, upstream, redis_server.url, tenants=tenants())]) as late:
            e = late[0].engine
            until(lambda: e.state.replicator.caught_up.is_set(), timeout=10)
            assert e.cache.stats().entries >= 10
            # ...and the stream carries what comes after
            h.post(first[0].url + "/v1/chat/completions", headers=AUTH, json=chat("A brand new question"))
            until(lambda: _exact(e, "A brand new question") is not None)
