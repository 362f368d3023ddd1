"""Scale-out figures on a real Redis (issue 17): replication lag, an outage under load, proxy overhead.

    python -m bench.redis_scale [--writes 1000] [--outage-s 6] [--proxy] [--out results/scale]

0. **Budgets**: 3 replicas (in this process) on one Redis, one tenant with a hard daily limit, 64 concurrent
   clients round-robin, every request a cache miss: the spend against the limit, the overshoot against the
   expected cost the requests in flight had reserved, and the three ledgers against the responses' costs.
1. **Propagation**: 3 replicas on one Redis; each of ``--writes`` answers is stored through replica A
   (a miss over HTTP) and the time from A's response to the entry being served by B and by C (an exact
   lookup in their own caches, polled every 0.2 ms) is recorded: p50/p99/max.
2. **Outage**: 3 replicas (``thrifty serve`` subprocesses, one fake upstream subprocess) with a budget, a
   rate limit and replication; ``--clients`` (4) clients round-robin after a warm-up; Redis is SIGKILLed a third of the way
   in and restarted (empty) at two thirds. Reported: 5xx count, p50/p99 latency before / during / after the
   outage, and the catch-up time (Redis back -> every replica's ``thrifty_state_up`` is 1 and the shared
   budget counter equals the sum of the costs the clients were charged).
3. **Overhead, interleaved**: four ``thrifty serve`` subprocesses on one fake upstream, each request sent to
   them in turn (A B C D A B C D …, one connection each, cache off, so the machine's load hits all four
   alike): local only and with ``state`` on Redis, each without tenant features and with a tenant whose
   requests reserve and settle a budget and pass a rate limit. Client-side p50/p99 and the server's own
   ``x-thrifty-overhead-ms``.
4. ``--proxy``: ``thrifty bench proxy``'s suite run twice, local only and with ``THRIFTY_REDIS_URL``.
5. ``--pairs N``: ``thrifty bench proxy --short``, N pairs, the order alternating (local first, then Redis
   first), to see how much of a back-to-back difference is the machine's drift.
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
ADMIN = "adm-redis-scale"


def _config(tmp: Path, i: int, upstream_url: str, url: str, **tenant: Any) -> dict[str, Any]:
    return {
        "data_dir": str(tmp / f"replica{i}"),
        "providers": [{"name": "fake", "kind": "openai-compatible", "base_url": upstream_url + "/v1",
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


def budgets(tmp: Path, *, hard: float = 0.5, clients: int = 64, n: int = 400) -> dict[str, Any]:
    from bench.fake_upstream import Reply
    from router.types import ChatRequest, ThriftyOptions, Usage

    usage = Usage(prompt_tokens=400, completion_tokens=300, total_tokens=700)
    tenant = {"budget": {"daily_usd": {"hard": hard}, "on_hard": "reject"}}
    with FakeUpstream() as up, RedisServer() as redis_server, \
            Cluster([_config(tmp / "budgets", i, up.url, redis_server.url, **tenant) for i in range(3)]) as cluster:
        up.script(*[Reply(usage=usage, delay=0.03)] * (n + 50))
        e = cluster[0].engine
        decision = e.rank(msgspec.convert(_chat("Spend question 0"), ChatRequest), None, tenant="acme",
                          options=ThriftyOptions(), policy=None)
        expected = max(c.expected_cost_usd for c in decision.candidates)
        queue = list(range(n))
        got: list[httpx.Response] = []

        async def client(h: httpx.AsyncClient) -> None:
            while queue:
                i = queue.pop()
                got.append(await h.post(cluster.urls[i % 3] + "/v1/chat/completions", json=_chat(f"Spend question {i}"),
                                        headers={**AUTH, "x-thrifty-cache-mode": "off"}))

        async def load() -> None:
            async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=2 * clients)) as h:
                await asyncio.gather(*(client(h) for _ in range(clients)))

        asyncio.run(load())
        for r in cluster.replicas:
            r.engine.ledger.flush()
            r.engine.budgets.flush()
        paid = sum(float(r.headers["x-thrifty-cost-usd"]) for r in got if r.status_code == 200)
        ledgers = [r.engine.ledger.spend(tenant="acme") for r in cluster.replicas]
        shared = e.budgets.states()[0].spend_usd
    return {"replicas": 3, "clients": clients, "requests": n, "hard_usd": hard,
            "answered": sum(r.status_code == 200 for r in got), "refused_429": sum(r.status_code == 429 for r in got),
            "other_statuses": sorted({r.status_code for r in got} - {200, 429}),
            "spend_usd": paid, "overshoot_usd": paid - hard, "expected_cost_per_request_usd": expected,
            "in_flight_bound_usd": clients * expected, "ledgers_usd": ledgers, "ledgers_sum_usd": sum(ledgers),
            "ledgers_equal_responses_to_the_cent": round(sum(ledgers), 2) == round(paid, 2),
            "shared_counter_usd": shared}


def propagation(n: int, tmp: Path) -> dict[str, Any]:
    from cache import scope as scope_of
    from router.types import ChatRequest

    with FakeUpstream() as up, RedisServer() as redis_server, \
            Cluster([_config(tmp / "prop", i, up.url, redis_server.url) for i in range(3)]) as cluster, \
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
                 redis_server: RedisServer) -> tuple[list[tuple[float, float, int, bool, float]], float]:
    """(start offset s, latency ms, status, degraded?, cost charged) per request; and the seconds from Redis's
    restart until every replica reported it up again."""
    rr = itertools.count()
    out: list[tuple[float, float, int, bool, float]] = []
    t0 = time.monotonic()
    back = [0.0]

    async def client(h: httpx.AsyncClient) -> None:
        while time.monotonic() - t0 < seconds:
            i = next(rr)
            start = time.monotonic()
            r = await h.post(urls[i % len(urls)] + "/v1/chat/completions", headers=AUTH,
                             json=_chat(f"Outage question {i if i % 3 else i // 3 % 11}"))
            out.append((start - t0, (time.monotonic() - start) * 1000, r.status_code,
                        r.headers.get("x-thrifty-state") == "degraded", float(r.headers.get("x-thrifty-cost-usd", 0))))

    async def chaos(h: httpx.AsyncClient) -> None:
        await asyncio.sleep(kill_at)
        await asyncio.to_thread(redis_server.kill)
        await asyncio.sleep(back_at - kill_at)
        await asyncio.to_thread(redis_server.start)
        restarted = time.monotonic()
        while time.monotonic() - restarted < 30:  # under load: every replica back on Redis
            texts = [(await h.get(url + "/metrics")).text for url in urls]
            if all("thrifty_state_up 1.0" in t for t in texts):
                back[0] = time.monotonic() - restarted
                return
            await asyncio.sleep(0.01)

    async with httpx.AsyncClient(timeout=30) as h:
        await asyncio.gather(chaos(h), *(client(h) for _ in range(clients)))
    return out, back[0]


def _caught_up(h: httpx.Client, urls: list[str], charged: float) -> bool:
    """Every replica reports Redis up, and the shared budget counter holds what the clients were charged."""
    for url in urls:
        if "thrifty_state_up 1.0" not in h.get(url + "/metrics").text:
            return False
    budgets = h.get(urls[0] + "/admin/budgets", headers={"authorization": f"Bearer {ADMIN}"}).json()
    daily = next(b for b in budgets if b["subject"] == "tenant:acme" and b["period"] == "daily")
    return bool(abs(daily["spend_usd"] - charged) < 1e-5)


def outage(seconds: float, tmp: Path, clients: int) -> dict[str, Any]:
    from bench._procs import fake_upstream, thrifty_serve

    tenant = {"budget": {"daily_usd": {"hard": 1000.0}}, "rate_limit": {"requests_per_min": 1_000_000}}
    work = tmp / "outage"
    with fake_upstream(work) as up, RedisServer() as redis_server:
        servers = [thrifty_serve(_config(work, i, up.base_url, redis_server.url, **tenant), work / f"r{i}",
                                 env={"THRIFTY_ADMIN_KEY": ADMIN}) for i in range(3)]
        try:
            for srv in servers:
                srv.start()
            urls = [srv.base_url for srv in servers]
            charged = 0.0
            with httpx.Client(timeout=10) as h:  # warm-up: every replica's first requests
                for i in range(30):
                    r = h.post(urls[i % 3] + "/v1/chat/completions", headers=AUTH, json=_chat(f"Warm-up {i}"))
                    charged += float(r.headers.get("x-thrifty-cost-usd", 0))
            kill_at, back_at = seconds / 3, 2 * seconds / 3
            rows, back_s = asyncio.run(_drive(urls, seconds, clients, kill_at, back_at, redis_server))
            charged += sum(row[4] for row in rows)
            settled = None  # once the load stops: the shared budget counter holds every charged cost
            t_end = time.monotonic()
            with httpx.Client(timeout=10) as h:
                while time.monotonic() - t_end < 30:
                    if _caught_up(h, urls, charged):
                        settled = time.monotonic() - t_end
                        break
                    time.sleep(0.02)
        finally:
            for srv in servers:
                srv.stop()

    def phase(lo: float, hi: float) -> dict[str, Any]:
        lat = [row[1] for row in rows if lo <= row[0] < hi]
        return {"requests": len(lat), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99)}

    before, during = phase(0, kill_at), phase(kill_at, back_at)
    return {
        "seconds": seconds, "clients": clients, "requests": len(rows),
        "5xx": sum(1 for row in rows if row[2] >= 500),
        "statuses": sorted({row[2] for row in rows}),
        "degraded_responses": sum(1 for row in rows if row[3]),
        "before": before, "during": during, "after": phase(back_at, seconds),
        "p99_added_during_ms": during["p99_ms"] - before["p99_ms"],
        "catch_up_s": back_s,  # Redis restarted (empty) -> all three replicas back on it, under load
        "budget_counter_equals_charged_after_s": settled,
        "charged_usd": charged,
    }


def overhead(n: int, tmp: Path, encoder: str = "hashing") -> dict[str, Any]:
    from bench import loadgen as lg
    from bench._procs import BENCH_MODEL, fake_upstream, thrifty_config, thrifty_serve
    from bench.proxy_bench import OFF

    work = tmp / "overhead"
    tenant = {"acme": {"keys": [{"name": "acme-1", "key": "sk-acme"}],
                       "budget": {"daily_usd": {"hard": 1_000_000.0}},
                       "rate_limit": {"requests_per_min": 1_000_000_000}}}
    with fake_upstream(work) as up, RedisServer() as redis_server:
        variants: dict[str, dict[str, Any]] = {}
        for name, state, tenants in (("local", None, None), ("redis", redis_server.url, None),
                                     ("local+budget+ratelimit", None, tenant),
                                     ("redis+budget+ratelimit", redis_server.url, tenant)):
            cfg = thrifty_config(up.port, work / name / "data", encoder=encoder)
            if state:
                cfg["state"] = state
            if tenants:
                cfg["tenants"] = tenants
            variants[name] = cfg
        servers = {name: thrifty_serve(cfg, work / name) for name, cfg in variants.items()}
        try:
            for srv in servers.values():
                srv.start()
            body = _json_bytes({"model": BENCH_MODEL, "messages": [{"role": "user", "content": "x" * 160}]})
            targets = []
            for name, srv in servers.items():
                ep = lg.Endpoint(srv.port, name=name)
                targets.append((ep, ep.request("/v1/chat/completions", body, {**OFF, **AUTH})))
            direct = lg.Endpoint(up.port, name="direct")
            targets.append((direct, direct.request("/v1/chat/completions", body)))
            samples = lg.run(lg.rotate(targets, n, warmup=100, keep_headers=("x-thrifty-overhead-ms",)))
        finally:
            for srv in servers.values():
                srv.stop()
    out: dict[str, Any] = {"requests_each": n, "encoder": encoder}
    for s in samples:
        summary = lg.summarize(s)
        server = sorted(float(v) for v in s.header_values.get("x-thrifty-overhead-ms", []))
        out[s.name] = {"p50_ms": summary.p50_ms, "p99_ms": summary.p99_ms, "errors": summary.errors,
                       "server_overhead_p50_ms": _pct(server, 50) if server else None,
                       "server_overhead_p99_ms": _pct(server, 99) if server else None}
    for plain, shared in (("local", "redis"), ("local+budget+ratelimit", "redis+budget+ratelimit")):
        out[f"{shared} - {plain}"] = {k: out[shared][k] - out[plain][k] for k in ("p50_ms", "p99_ms")}
    return out


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


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


def pairs(n: int, out: Path, url: str) -> list[dict[str, Any]]:
    from bench.proxy_bench import parse_args, plan_from, run_suite
    from bench.report import Report

    rows: list[dict[str, Any]] = []
    try:
        for i in range(n):
            order = ("local", "redis") if i % 2 == 0 else ("redis", "local")
            for name in order:
                if name == "redis":
                    os.environ["THRIFTY_REDIS_URL"] = url
                else:
                    os.environ.pop("THRIFTY_REDIS_URL", None)
                args = parse_args(["--short"], "thrifty bench proxy", str(out / f"pairs/{i}-{name}"))
                report = Report("proxy", args.out, command=f"bench.redis_scale --pairs ({i}, {name})")
                with tempfile.TemporaryDirectory(prefix="thrifty-bench-") as work:
                    seq = run_suite(plan_from(args), Path(work), report)["sequential"]
                rows.append({"pair": i, "target": name, "added_p50_ms": seq["added"]["p50_ms"],
                             "server_overhead_p50_ms": seq["server_overhead_ms"]["p50_ms"]})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        os.environ.pop("THRIFTY_REDIS_URL", None)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.redis_scale", description=__doc__.split("\n")[0])
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--outage-s", type=float, default=6.0)
    ap.add_argument("--proxy", action="store_true", help="also run thrifty bench proxy, local vs Redis")
    ap.add_argument("--pairs", type=int, default=0, help="thrifty bench proxy --short pairs, order alternating")
    ap.add_argument("--skip", nargs="*", default=[], choices=["budgets", "propagation", "outage", "overhead"])
    ap.add_argument("--overhead-n", type=int, default=2000, help="requests to each target in the overhead run")
    ap.add_argument("--overhead-encoder", choices=("hashing", "default"), default="hashing",
                    help="the replicas' encoder in the overhead run (default: MiniLM, as thrifty bench proxy)")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients of the outage run")
    ap.add_argument("--work", type=Path, default=None, help="keep the replicas' data and logs here")
    ap.add_argument("--out", type=Path, default=Path("results/scale"))
    ap.add_argument("--name", default=None, help="the results file's stem (default: redis)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": "shared 2-core box (other jobs running)", "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="thrifty-redis-scale-") as tmp:
        work = args.work or Path(tmp)
        if "budgets" not in args.skip:
            result["budgets"] = budgets(work)
            print(json.dumps(result["budgets"]), flush=True)
        if "propagation" not in args.skip:
            result["propagation"] = propagation(args.writes, work)
            print(json.dumps(result["propagation"]), flush=True)
        if "outage" not in args.skip:
            result["outage"] = outage(args.outage_s, work, args.clients)
            print(json.dumps(result["outage"]), flush=True)
        if "overhead" not in args.skip:
            result["overhead"] = overhead(args.overhead_n, work, args.overhead_encoder)
            print(json.dumps(result["overhead"]), flush=True)
        if args.proxy:
            with RedisServer() as redis_server:
                result["proxy"] = proxy(args.out, redis_server.url)
        if args.pairs:
            with RedisServer() as redis_server:
                result["pairs"] = pairs(args.pairs, args.out, redis_server.url)
    (args.out / f"{args.name or 'redis'}-{time.strftime('%Y-%m-%d')}.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "proxy"}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
