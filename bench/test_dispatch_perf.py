"""Dispatch overhead over a raw httpx call to the same loopback upstream, per transport.

The fake upstream runs in its own process (so it does not share this process's GIL). Each iteration
times a raw ``httpx`` POST (prebuilt body, bytes read, nothing decoded) and a full ``Dispatcher.complete``
(encode, send, decode, cost, breaker, attempt record) back to back, alternating which goes first, on
the same client transport. Overhead = percentile(dispatch) - percentile(raw). Streaming: time to the
first content chunk through ``Dispatcher.stream`` versus time to the first body bytes of a raw stream.

    .venv/bin/python -m pytest bench/test_dispatch_perf.py -s
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Literal

import msgspec
import pytest

from models.schema import ModelEntry, Price, Route
from router.candidate import Candidate
from router.dispatch import Dispatcher
from router.providers import ProviderConfig, build_provider
from router.types import ChatRequest, Message, StreamOptions, encoder

N = int(os.environ.get("THRIFTY_BENCH_N", "3000"))
WARMUP = 300
CONCURRENCY = 32
BUDGET = {"p50_ms": 0.3, "p99_ms": 1.0, "ttfb_ms": 0.5}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def upstream_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.fake_upstream", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _setup(url: str, transport: Literal["aiohttp", "httpx"]) -> tuple[Dispatcher, list[Candidate], ChatRequest, bytes, dict[str, str]]:
    config = ProviderConfig(name="up", kind="openai", base_url=url + "/v1", transport=transport)
    provider = build_provider(config)
    dispatcher = Dispatcher({"up": provider})
    entry = ModelEntry(id="m", vendor="t", price=Price(input=1.0, output=2.0), context_window=8192,
                       max_output=512, routes=(Route(provider="up", model="m"),))
    request = ChatRequest(messages=[Message(role="system", content="Be terse."),
                                    Message(role="user", content="What is the answer to everything?")])
    body = encoder.encode(msgspec.structs.replace(request, model="m"))
    return dispatcher, [Candidate(model=entry, route=entry.routes[0])], request, body, {"content-type": "application/json"}


async def _latency(url: str, transport: Literal["aiohttp", "httpx"]) -> dict[str, float]:
    dispatcher, cands, request, body, headers = _setup(url, transport)
    client = dispatcher.providers["up"].client  # type: ignore[attr-defined]  # same pooled transport
    target = url + "/v1/chat/completions"
    stream_request = msgspec.structs.replace(request, model="m")
    stream_body = encoder.encode(msgspec.structs.replace(stream_request, stream=True,
                                                          stream_options=StreamOptions(include_usage=True)))

    async def raw() -> float:
        t = time.perf_counter()
        r = await client.post(target, content=body, headers=headers)
        _ = r.content
        return time.perf_counter() - t

    async def routed() -> float:
        t = time.perf_counter()
        await dispatcher.complete(request, cands)
        return time.perf_counter() - t

    async def raw_stream() -> float:
        t = time.perf_counter()
        async with client.stream("POST", target, content=stream_body, headers=headers) as r:
            first = 0.0
            async for _ in r.aiter_raw():
                if not first:
                    first = time.perf_counter() - t
        return first

    async def routed_stream() -> float:
        t = time.perf_counter()
        result = await dispatcher.stream(request, cands)
        first = 0.0
        async for _ in result:
            if not first:
                first = time.perf_counter() - t
        return first

    out: dict[str, list[float]] = {"raw": [], "dispatch": [], "raw_stream": [], "dispatch_stream": []}
    pairs = [("raw", raw, "dispatch", routed), ("raw_stream", raw_stream, "dispatch_stream", routed_stream)]
    for i in range(WARMUP + N):
        for a_name, a, b_name, b in pairs:
            first, second = ((a_name, a), (b_name, b)) if i % 2 else ((b_name, b), (a_name, a))
            x = await first[1]()
            y = await second[1]()
            if i >= WARMUP:
                out[first[0]].append(x)
                out[second[0]].append(y)
    await dispatcher.aclose()
    stats = {
        "raw_p50_ms": _pct(out["raw"], 0.5), "raw_p99_ms": _pct(out["raw"], 0.99),
        "dispatch_p50_ms": _pct(out["dispatch"], 0.5), "dispatch_p99_ms": _pct(out["dispatch"], 0.99),
        "raw_ttfb_p50_ms": _pct(out["raw_stream"], 0.5), "dispatch_ttfb_p50_ms": _pct(out["dispatch_stream"], 0.5),
        "raw_ttfb_p99_ms": _pct(out["raw_stream"], 0.99), "dispatch_ttfb_p99_ms": _pct(out["dispatch_stream"], 0.99),
    }
    stats["overhead_p50_ms"] = stats["dispatch_p50_ms"] - stats["raw_p50_ms"]
    stats["overhead_p99_ms"] = stats["dispatch_p99_ms"] - stats["raw_p99_ms"]
    stats["stream_ttfb_overhead_p50_ms"] = stats["dispatch_ttfb_p50_ms"] - stats["raw_ttfb_p50_ms"]
    stats["stream_ttfb_overhead_p99_ms"] = stats["dispatch_ttfb_p99_ms"] - stats["raw_ttfb_p99_ms"]
    stats["paired_median_overhead_ms"] = statistics.median(
        d - r for d, r in zip(out["dispatch"], out["raw"], strict=True)) * 1000
    return stats


async def _throughput(url: str, transport: Literal["aiohttp", "httpx"]) -> float:
    total = 4000 if transport == "aiohttp" else 1000  # the default transport is ~10x slower
    dispatcher, cands, request, _, _ = _setup(url, transport)
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await dispatcher.complete(request, cands)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))  # warm the pool
    remaining = total
    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    rate = total / (time.perf_counter() - t)
    await dispatcher.aclose()
    return rate


def _report(transport: str, stats: dict[str, float]) -> None:
    print(f"\n[{transport}] n={N} sequential, alternating A/B")
    for key, value in stats.items():
        print(f"  {key:32s} {value:8.3f}")


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_dispatch_overhead(benchmark: pytest.FixtureRequest, upstream_url: str,
                           transport: Literal["aiohttp", "httpx"]) -> None:
    stats: dict[str, float] = {}

    def run() -> None:
        stats.update(asyncio.run(_latency(upstream_url, transport)))

    benchmark.pedantic(run, rounds=1, iterations=1)  # type: ignore[attr-defined]
    benchmark.extra_info.update(stats)  # type: ignore[attr-defined]
    _report(transport, stats)
    if transport == "aiohttp":  # the default transport carries the budget
        assert stats["overhead_p50_ms"] <= BUDGET["p50_ms"], stats
        assert stats["overhead_p99_ms"] <= BUDGET["p99_ms"], stats
        assert stats["stream_ttfb_overhead_p50_ms"] <= BUDGET["ttfb_ms"], stats


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_dispatch_throughput(benchmark: pytest.FixtureRequest, upstream_url: str,
                             transport: Literal["aiohttp", "httpx"]) -> None:
    rates: list[float] = []
    benchmark.pedantic(lambda: rates.append(asyncio.run(_throughput(upstream_url, transport))),  # type: ignore[attr-defined]
                       rounds=1, iterations=1)
    benchmark.extra_info["req_per_s"] = rates[0]  # type: ignore[attr-defined]
    print(f"\n[{transport}] {CONCURRENCY} concurrent dispatches: {rates[0]:.0f} req/s")
