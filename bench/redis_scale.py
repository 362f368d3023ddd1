"""Scale-out figures on a real Redis (issue 17): replication lag, an outage under load, proxy overhead.

    python -m bench.redis_scale [--writes 1000] [--outage-s 6] [--proxy] [--out results/scale]

1. **Propagation**: 3 replicas on one Redis; each of ``--writes`` answers is stored through replica A
   (a miss over HTTP) and the time from A's response to the entry being served by B and by C (an exact
   lookup in their own caches, polled every 0.2 ms) is recorded: p50/p99/max.
2. **Outage**: 3 replicas with a budget, a rate limit and replication, 12 clients round-robin; Redis is
   SIGKILLed a third of the way in and restarted (empty) at two thirds. Reported: 5xx count, p50/p99 latency
   before / during / after the outage, and the catch-up time (Redis back -> every replica up, every queued
   cache write sent, the shared budget counter equal to the sum of the ledgers).
3. ``--proxy``: ``thrifty bench proxy``'s suite run twice, local only and with ``THRIFTY_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench._redis_cluster import Cluster, RedisServer
from bench.fake_upstream import FakeUpstream

AUTH = {"authorization": "Bearer sk-acme"}


def _config(tmp: Path, i: int, upstream: FakeUpstream, url: str, **tenant: Any) -> dict[str, Any]:
    return {
        "data_dir": str(tmp / f"replica{i}"),
        "providers": [{"name": "fake", "kind": "openai-compatible", "base_url": upstream.url + "/v1",
                       "retries": {"attempts": 1}}],
        "routes": {"fake": ["*"]},
        "cache": {"encoder": "hashing"},
        "server": {"access_log": "off"},
        "state": {"url": url, "timeout_ms": 50},
        "tenants": {"acme": {"keys": [{"name": "acme-1", "key": "sk-acme"}], **tenant}},
    }


def _chat(prompt: str) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}]}


def _pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def propagation(n: int, tmp: Path) -> dict[str, Any]:
    from cache import scope as scope_of
    from router.types import ChatRequest

    with FakeUpstream() as up, RedisServer() as redis_server, \
            Cluster([_config(tmp / "prop", i, up, redis_server.url) for i in range(3)]) as cluster, \
            httpx.Client(timeout=10) as h:
        engines = [r.engine for r in cluster.replicas]
        owner, ns = engines[0].space_of("acme", None)
        lags: list[float] = []
        for i in range(n):
            body = _chat(f"Propagation question number {i}")
            key = scope_of(msgspec.convert(body, ChatRequest), namespace=ns, tenant=owner)
            r = h.post(cluster[0].url + "/v1/chat/completions", json=body, headers=AUTH)
            t0 = time.perf_counter()
            assert r.status_code == 200, r.text
            waiting = {1, 2}
            while waiting:
                waiting = {j for j in waiting if engines[j].cache.lookup_exact(key) is None}
                if time.perf_counter() - t0 > 5:
                    raise RuntimeError(f"write {i} not replicated in 5 s")
                if waiting:
                    time.sleep(0.0002)
            lags.append((time.perf_counter() - t0) * 1000)
        return {"writes": n, "p50_ms": _pct(lags, 50), "p99_ms": _pct(lags, 99), "max_ms": max(lags),
                "under_100ms": sum(x < 100 for x in lags) / n}


async def _drive(urls: list[str], seconds: float, clients: int, kill_at: float, back_at: float,
                 redis_server: RedisServer) -> tuple[list[tuple[float, float, int, bool]], float]:
    rr = itertools.count()
    out: list[tuple[float, float, int, bool]] = []  # (start offset s, latency ms, status, degraded)
    t0 = time.monotonic()
    back = [0.0]

    async def client(h: httpx.AsyncClient) -> None:
        while time.monotonic() - t0 < seconds:
            i = next(rr)
            start = time.monotonic()
            r = await h.post(urls[i % len(urls)] + "/v1/chat/completions", headers=AUTH,
                             json=_chat(f"Outage question {i if i % 3 else i // 3 % 11}"))
            out.append((start - t0, (time.monotonic() - start) * 1000, r.status_code,
                        r.headers.get("x-thrifty-state") == "degraded"))

    async def chaos() -> None:
        await asyncio.sleep(kill_at)
        await asyncio.to_thread(redis_server.kill)
        await asyncio.sleep(back_at - kill_at)
        await asyncio.to_thread(redis_server.start)
        back[0] = time.monotonic()

    async with httpx.AsyncClient(timeout=30) as h:
        await asyncio.gather(chaos(), *(client(h) for _ in range(clients)))
    return out, back[0]


def outage(seconds: float, tmp: Path) -> dict[str, Any]:
    tenant = {"budget": {"daily_usd": {"hard": 1000.0}}, "rate_limit": {"requests_per_min": 1_000_000}}
    with FakeUpstream() as up, RedisServer() as redis_server, \
            Cluster([_config(tmp / "outage", i, up, redis_server.url, **tenant) for i in range(3)]) as cluster:
        kill_at, back_at = seconds / 3, 2 * seconds / 3
        rows, back = asyncio.run(_drive(cluster.urls, seconds, 12, kill_at, back_at, redis_server))
        engines = [r.engine for r in cluster.replicas]
        caught_up = None
        while time.monotonic() - back < 30:
            if all(e.state.conn.up and not e.state.replicator.pending for e in engines):
                for e in engines:
                    e.ledger.flush()
                    e.budgets.flush()
                ledgers = sum(e.ledger.spend(tenant="acme") for e in engines)
                shared = engines[0].budgets.states()[0].spend_usd
                if abs(shared - ledgers) < 1e-6:
                    caught_up = time.monotonic() - back
                    break
            time.sleep(0.01)

    def phase(lo: float, hi: float) -> dict[str, Any]:
        lat = [ms for at, ms, _, _ in rows if lo <= at < hi]
        return {"requests": len(lat), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99)}

    return {
        "seconds": seconds, "clients": 12, "requests": len(rows),
        "5xx": sum(1 for _, _, s, _ in rows if s >= 500),
        "statuses": sorted({s for _, _, s, _ in rows}),
        "degraded_responses": sum(1 for *_, d in rows if d),
        "before": phase(0, kill_at), "during": phase(kill_at, back_at), "after": phase(back_at, seconds),
        "catch_up_s": caught_up,
    }


def proxy(out: Path, url: str) -> dict[str, Any]:
    from bench.proxy_bench import parse_args, plan_from, run_suite
    from bench.report import Report

    figures: dict[str, Any] = {}
    for name, redis_url in (("local", None), ("redis", url)):
        if redis_url:
            os.environ["THRIFTY_REDIS_URL"] = redis_url
        else:
            os.environ.pop("THRIFTY_REDIS_URL", None)
        args = parse_args([], "thrifty bench proxy", str(out / f"proxy-{name}"))
        report = Report("proxy", args.out, command=f"bench.redis_scale --proxy ({name})")
        with tempfile.TemporaryDirectory(prefix="thrifty-bench-") as work:
            figures[name] = run_suite(plan_from(args), Path(work), report)
        report.write()
    os.environ.pop("THRIFTY_REDIS_URL", None)
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.redis_scale", description=__doc__.split("\n")[0])
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--outage-s", type=float, default=6.0)
    ap.add_argument("--proxy", action="store_true", help="also run thrifty bench proxy, local vs Redis")
    ap.add_argument("--skip", nargs="*", default=[], choices=["propagation", "outage"])
    ap.add_argument("--out", type=Path, default=Path("results/scale"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": "shared 2-core box (other jobs running)", "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="thrifty-redis-scale-") as tmp:
        if "propagation" not in args.skip:
            result["propagation"] = propagation(args.writes, Path(tmp))
            print(json.dumps(result["propagation"]), flush=True)
        if "outage" not in args.skip:
            result["outage"] = outage(args.outage_s, Path(tmp))
            print(json.dumps(result["outage"]), flush=True)
        if args.proxy:
            with RedisServer() as redis_server:
                result["proxy"] = proxy(args.out, redis_server.url)
    stamp = time.strftime("%Y-%m-%d")
    (args.out / f"redis-{stamp}.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "proxy"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
