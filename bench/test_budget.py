"""The latency budget, enforced: added latency p99 <= 50 ms on every path, prompt size and entry point.

    pytest bench/test_budget.py --benchmark-only --benchmark-disable-gc        # full (make bench)
    THRIFTY_BENCH_SHORT=1 pytest bench/test_budget.py --benchmark-only         # CI's short form
    THRIFTY_BENCH_INJECT_SLEEP_MS=60 pytest bench/test_budget.py ...           # proves they can fail

Paths: exact hit (the same request again), semantic hit (a paraphrase), miss (a unique prompt, answered by
the fake upstream). Sizes: short (<= 64 tokens), medium (~500), long (~8,000). Entry points: in process
(``Engine.complete``) and through the proxy (``thrifty serve``, HTTP on 127.0.0.1).

Added latency, per request: in process, wall time minus the upstream's time (``meta``); through the
proxy, a hit's whole time (nothing upstream was called) and, for a miss, the time through thrifty minus
the same request sent straight to the fake upstream right after it (paired). Each benchmark asserts on
its own measured p99, and checks that the path it claims was really taken (``x-thrifty-cache``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import _inject, workload
from bench import loadgen as lg
from bench._procs import BENCH_MODEL, Server, fake_upstream, thrifty_config, thrifty_serve

BUDGET_P99_MS = 50.0
SHORT = os.environ.get("THRIFTY_BENCH_SHORT") == "1"
ROUNDS = 25 if SHORT else 200
PATHS = ("exact", "semantic", "miss")
SIZES = ("short", "medium", "long")
EXPECTED = {"exact": "exact", "semantic": "hit", "miss": "miss"}

def texts(size: str) -> list[tuple[str, str]]:
    return workload.sized_pairs(size)


def miss_text(size: str, i: int) -> str:
    return workload.prompt(workload.SIZES[size], i, unique=f"{time.time_ns()}-{i}")


def p99(values: list[float]) -> float:
    return float(np.percentile(np.asarray(values), 99))


def record(benchmark: Any, added_ms: list[float], outcomes: list[str], expected: str) -> float:
    p50, p95, q99 = np.percentile(np.asarray(added_ms), (50, 95, 99))
    benchmark.extra_info.update({"added_p50_ms": float(p50), "added_p95_ms": float(p95), "added_p99_ms": float(q99),
                                 "n": len(added_ms), "budget_p99_ms": BUDGET_P99_MS,
                                 "injected_sleep_ms": _inject.injected_ms()})
    wrong = [o for o in outcomes if o != expected]
    assert not wrong, f"expected every request to take the {expected!r} path; got {sorted(set(wrong))}"
    return float(q99)


def pedantic(benchmark: Any, fn: Callable[[int], None], rounds: int = ROUNDS) -> None:
    counter = iter(range(10**9))
    gc.collect()
    gc.disable()  # also with --benchmark-disable-gc: our own timings are taken inside fn
    try:
        benchmark.pedantic(lambda: fn(next(counter)), rounds=rounds, iterations=1, warmup_rounds=3)
    finally:
        gc.enable()


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("budget")


@pytest.fixture(scope="module")
def upstream(work: Path) -> Iterator[Server]:
    with fake_upstream(work) as up:
        yield up


@pytest.fixture(scope="module")
def engine(upstream: Server, work: Path) -> Iterator[tuple[Any, asyncio.AbstractEventLoop]]:
    from bench.overhead import engine_class

    undo = _inject.apply()
    loop = asyncio.new_event_loop()
    eng = engine_class().from_config(thrifty_config(upstream.port, work / "inproc"))
    loop.run_until_complete(eng.start())
    for size in SIZES:
        for a, _ in texts(size):
            loop.run_until_complete(eng.complete(workload.chat(a, model=BENCH_MODEL)))
    try:
        yield eng, loop
    finally:
        loop.run_until_complete(eng.aclose())
        loop.close()
        undo()


class Client:
    """Keep-alive connections to the proxy and to the upstream, on one event loop for the whole module."""

    def __init__(self, proxy_port: int, upstream_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.eps = {"thrifty": lg.Endpoint(proxy_port, name="thrifty"), "direct": lg.Endpoint(upstream_port, name="direct")}
        self.conns = {k: lg.Connection(ep) for k, ep in self.eps.items()}

    def send(self, target: str, body: bytes) -> lg.Reply:
        raw = self.eps[target].request("/v1/chat/completions", body)
        return self.loop.run_until_complete(self.conns[target].send(raw))

    def close(self) -> None:
        for c in self.conns.values():
            c.close()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()


@pytest.fixture(scope="module")
def proxy(upstream: Server, work: Path) -> Iterator[Client]:
    with thrifty_serve(thrifty_config(upstream.port, work / "proxy"), work / "proxy-run", module="bench._inject") as srv:
        client = Client(srv.port, upstream.port)
        try:
            for size in SIZES:
                for a, _ in texts(size):
                    reply = client.send("thrifty", workload.chat_bytes(a, model=BENCH_MODEL))
                    assert reply.status == 200, reply.body[:300]
            yield client
        finally:
            client.close()


# ---------------------------------------------------------------------------------------------- in process
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("path", PATHS)
def test_budget_in_process(benchmark: Any, engine: tuple[Any, asyncio.AbstractEventLoop], path: str, size: str) -> None:
    eng, loop = engine
    pairs = texts(size)
    added: list[float] = []
    outcomes: list[str] = []

    def one(i: int) -> None:
        text = pairs[i % len(pairs)][0 if path == "exact" else 1] if path != "miss" else miss_text(size, i)
        t = time.perf_counter_ns()
        done = loop.run_until_complete(eng.complete(workload.chat(text, model=BENCH_MODEL)))
        wall = (time.perf_counter_ns() - t) / 1e6
        upstream_ms = max(0.0, done.meta.latency_ms - done.meta.overhead_ms)
        added.append(wall - upstream_ms)
        outcomes.append(done.meta.cache)

    pedantic(benchmark, one)
    q99 = record(benchmark, added, outcomes, EXPECTED[path])
    assert q99 <= BUDGET_P99_MS, f"in process, {path}, {size}: added p99 {q99:.2f} ms > {BUDGET_P99_MS} ms"


# ---------------------------------------------------------------------------------------------- proxy
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("path", PATHS)
def test_budget_through_proxy(benchmark: Any, proxy: Client, path: str, size: str) -> None:
    pairs = texts(size)
    added: list[float] = []
    outcomes: list[str] = []

    def one(i: int) -> None:
        text = pairs[i % len(pairs)][0 if path == "exact" else 1] if path != "miss" else miss_text(size, i)
        body = workload.chat_bytes(text, model=BENCH_MODEL)
        reply = proxy.send("thrifty", body)
        assert reply.status == 200, reply.body[:300]
        outcomes.append(reply.headers.get("x-thrifty-cache", "?"))
        through = reply.latency_ns / 1e6
        if path == "miss":  # the same request straight to the upstream, right after: paired difference
            direct = proxy.send("direct", body)
            through -= direct.latency_ns / 1e6
        added.append(through)

    pedantic(benchmark, one)
    q99 = record(benchmark, added, outcomes, EXPECTED[path])
    assert q99 <= BUDGET_P99_MS, f"through the proxy, {path}, {size}: added p99 {q99:.2f} ms > {BUDGET_P99_MS} ms"
