"""Rate limits and circuit state shared by 3 replicas on one Redis; and a rate limit without Redis."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from scale_support import AUTH, chat, replica_config, tenants

from bench._redis_cluster import Cluster, RedisServer
from bench.fake_upstream import FakeUpstream, Reply


def test_requests_per_minute_is_one_limit_across_replicas(
        redis_server: RedisServer, upstream: FakeUpstream, tmp_path: Path) -> None:
    limit = {"requests_per_min": 6}
    configs = [replica_config(tmp_path, i, upstream, redis_server.url, tenants=tenants(rate_limit=limit))
               for i in range(3)]
    with Cluster(configs) as cluster, httpx.Client(timeout=10) as h:
        out = [h.post(cluster[i % 3].url + "/v1/chat/completions", headers=AUTH, json=chat(f"Rate question {i}"))
               for i in range(9)]
        assert [r.status_code for r in out] == [200] * 6 + [429] * 3
        err = out[-1]
        body = err.json()["error"]
        assert body["code"] == "rate_limit_exceeded" and body["type"] == "requests"
        assert "tenant:acme" in body["message"] and "sk-acme" not in err.text
        assert 1 <= int(err.headers["retry-after"]) <= 10  # one request's interval: 60 s / 6
        # A cache hit is not an upstream call: it never counts against (nor is refused by) the limit.
        hit = h.post(cluster[2].url + "/v1/chat/completions", headers=AUTH, json=chat("Rate question 0"))
        assert hit.status_code == 200 and hit.headers["x-thrifty-cache"] in ("exact", "hit")


def test_tokens_per_minute_refuses_once_the_answered_tokens_reach_it(
        upstream: FakeUpstream, tmp_path: Path) -> None:
    from router.types import Usage

    limit = {"tokens_per_min": 1000}
    cfg = replica_config(tmp_path, 0, upstream, None, tenants=tenants(rate_limit=limit))
    upstream.script(*[Reply(usage=Usage(prompt_tokens=300, completion_tokens=300, total_tokens=600))] * 5)
    with Cluster([cfg]) as one, httpx.Client(timeout=10) as h:  # no Redis: the local limiter
        codes = [h.post(one[0].url + "/v1/chat/completions", headers=AUTH, json=chat(f"Token question {i}"))
                 for i in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert codes[2].json()["error"]["type"] == "tokens"
        assert int(codes[2].headers["retry-after"]) >= 1


def test_a_circuit_opened_on_one_replica_is_open_on_all_and_probed_once(
        redis_server: RedisServer, upstream: FakeUpstream, tmp_path: Path) -> None:
    configs = [replica_config(tmp_path, i, upstream, redis_server.url, tenants=tenants()) for i in range(3)]
    for cfg in configs:
        cfg["providers"][0]["breaker"] = {"consecutive_failures": 2, "cooldown": 1.0}
        cfg["routing"] = {"fallbacks": {}}
        cfg["dispatch"]["fallback"] = False
    model = "gpt-4o"
    with Cluster(configs) as cluster, httpx.Client(timeout=10) as h:
        upstream.script(*[Reply.error_status(500)] * 2)
        for i in range(2):  # replica A sees the deployment fail twice: its circuit opens
            r = h.post(cluster[0].url + "/v1/chat/completions", headers=AUTH, json=chat(f"Circuit {i}", model))
            assert r.status_code >= 500
        deployment = f"fake/{model}"
        deadline = time.monotonic() + 2
        while not all(r.engine.dispatcher.breakers.is_open(deployment) for r in cluster.replicas):
            assert time.monotonic() < deadline, [r.engine.dispatcher.breakers.states() for r in cluster.replicas]
            time.sleep(0.005)
        calls = len(upstream.requests)
        for replica in cluster.replicas[1:]:  # B and C refuse without calling the deployment
            r = h.post(replica.url + "/v1/chat/completions", headers=AUTH, json=chat("Circuit B", model))
            assert r.status_code == 503 and r.json()["error"]["code"] == "circuit_open"
            assert "retry-after" in r.headers
        assert len(upstream.requests) == calls
        # After the cool-down exactly one replica sends the half-open probe; its success closes all three.
        time.sleep(1.1)
        upstream.script(Reply(delay=0.3))
        import concurrent.futures as cf

        with cf.ThreadPoolExecutor(6) as pool:
            futs = [pool.submit(h.post, cluster[i % 3].url + "/v1/chat/completions", headers=AUTH,
                                json=chat(f"Probe {i}", model)) for i in range(6)]
            codes = sorted(f.result().status_code for f in futs)
        assert len(upstream.requests) == calls + 1, codes  # one probe, not one per replica
        assert codes.count(200) == 1
        deadline = time.monotonic() + 2
        while any(r.engine.dispatcher.breakers.is_open(deployment) for r in cluster.replicas):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        r = h.post(cluster[2].url + "/v1/chat/completions", headers=AUTH, json=chat("After the probe", model))
        assert r.status_code == 200
