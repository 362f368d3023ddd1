"""A small, fast HTTP/1.1 load generator for loopback benchmarks.

Why raw asyncio protocols and not aiohttp/httpx: on a 2-core machine the client shares the CPU with the
proxy and the fake upstream, so its own cost per request must be a few microseconds or it becomes the
thing being measured. A keep-alive connection, pre-encoded request bytes and an incremental response
parser (Content-Length or chunked) are all a benchmark needs. ``python -m bench.loadgen ceiling``
measures the generator's own ceiling against a trivial server in another process.

Every run is bounded in count and in time, and only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import multiprocessing
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0)
CONCURRENCY_LEVELS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)


class LoadgenError(Exception):
    """The load generator was used wrongly (not a failed request: those are counted, not raised)."""


# ---------------------------------------------------------------------------------------------- targets
@dataclass(frozen=True)
class Endpoint:
    """One HTTP target on this machine."""

    port: int
    host: str = "127.0.0.1"
    name: str = "target"

    def __post_init__(self) -> None:
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if not loopback:
            raise LoadgenError(f"refusing to load {self.host!r}: only loopback addresses are allowed")

    def request(self, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                method: str = "POST") -> bytes:
        """Pre-encode one keep-alive request."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        hdrs = {"content-type": "application/json", **(headers or {})}
        lines += [f"{k}: {v}" for k, v in hdrs.items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# A request source: the same bytes every time, or a function of the request's index (unique prompts).
Calls = bytes | Callable[[int], bytes]


def _call(calls: Calls, i: int) -> bytes:
    return calls if isinstance(calls, bytes) else calls(i)


@dataclass
class Reply:
    status: int
    latency_ns: int
    ttfb_ns: int  # first byte of the body (a stream's first event)
    headers: dict[str, str]
    body: bytes


# ---------------------------------------------------------------------------------------------- connection
class _Protocol(asyncio.Protocol):
    """One keep-alive connection that parses a single response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Reply] | None = None
        self.closed = False
        self._reset(0)

    def _reset(self, t0: int) -> None:
        self.t0 = t0
        self.t_body = 0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head_done = False
        self.length: int | None = None
        self.chunked = False
        self.pos = 0  # parse position inside buf (after the head)
        self.body = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed: {exc}"))

    def send(self, raw: bytes) -> asyncio.Future[Reply]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.buf.clear()
        self._reset(time.perf_counter_ns())
        self.transport.write(raw)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        self.buf += data
        if not self.head_done and not self._parse_head():
            return
        if not self.t_body and len(self.buf) > self.pos:
            self.t_body = now
        if self._parse_body():
            end = time.perf_counter_ns()
            reply = Reply(self.status, end - self.t0, (self.t_body or end) - self.t0, self.headers, bytes(self.body))
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(reply)

    def _parse_head(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        if not self.chunked:
            self.length = int(self.headers.get("content-length", "0"))
        self.head_done = True
        self.pos = end + 4
        return True

    def _parse_body(self) -> bool:
        if not self.chunked:
            assert self.length is not None
            if len(self.buf) - self.pos < self.length:
                return False
            self.body += self.buf[self.pos:self.pos + self.length]
            return True
        while True:
            eol = self.buf.find(b"\r\n", self.pos)
            if eol < 0:
                return False
            size = int(bytes(self.buf[self.pos:eol]).split(b";", 1)[0], 16)
            start = eol + 2
            if len(self.buf) < start + size + 2:
                return False
            if size == 0:
                return True
            self.body += self.buf[start:start + size]
            self.pos = start + size + 2


class Connection:
    """A keep-alive HTTP/1.1 connection to one endpoint; reconnects when the server closes it."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._proto: _Protocol | None = None

    async def _ensure(self) -> _Protocol:
        if self._proto is None or self._proto.closed:
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_connection(_Protocol, self.endpoint.host, self.endpoint.port)
            self._proto = proto
        return self._proto

    async def send(self, raw: bytes, timeout_s: float = 30.0) -> Reply:
        proto = await self._ensure()
        try:
            reply = await asyncio.wait_for(proto.send(raw), timeout_s)
        except BaseException:
            self.close()  # a half-read response would poison the next one
            raise
        if reply.headers.get("connection", "").lower() == "close":
            self.close()
        return reply

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Samples:
    """Latencies of successful requests, plus what went wrong."""

    name: str = ""
    latency_ns: list[int] = field(default_factory=list)
    ttfb_ns: list[int] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    last_error: str | None = None
    header_values: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reply: Reply, keep_headers: Sequence[str] = ()) -> None:
        self.statuses[reply.status] = self.statuses.get(reply.status, 0) + 1
        if reply.status >= 400:
            self.errors += 1
            self.last_error = f"HTTP {reply.status}: {reply.body[:300]!r}"
            return
        self.latency_ns.append(reply.latency_ns)
        self.ttfb_ns.append(reply.ttfb_ns)
        for h in keep_headers:
            if h in reply.headers:
                self.header_values.setdefault(h, []).append(reply.headers[h])

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"

    @property
    def ok(self) -> int:
        return len(self.latency_ns)


@dataclass(frozen=True)
class Summary:
    n: int
    errors: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput_rps: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def percentiles_ms(values_ns: Sequence[float] | np.ndarray, pcts: Sequence[float] = PERCENTILES) -> list[float]:
    if len(values_ns) == 0:
        return [float("nan")] * len(pcts)
    arr = np.asarray(values_ns, dtype=np.float64) / 1e6
    return [float(x) for x in np.percentile(arr, pcts)]


def summarize(s: Samples, *, ttfb: bool = False) -> Summary:
    values = s.ttfb_ns if ttfb else s.latency_ns
    if not values:
        nan = float("nan")
        return Summary(0, s.errors, nan, nan, nan, nan, nan, 0.0)
    arr = np.asarray(values, dtype=np.float64) / 1e6
    p50, p95, p99 = (float(x) for x in np.percentile(arr, PERCENTILES))
    rps = s.ok / s.elapsed_s if s.elapsed_s > 0 else 0.0
    return Summary(len(arr), s.errors, float(arr.mean()), p50, p95, p99, float(arr.max()), rps)


def added(through: Summary, direct: Summary) -> dict[str, float]:
    """Added latency per percentile: through thrifty minus direct (as the client sees it)."""
    return {k: getattr(through, k) - getattr(direct, k) for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms")}


# ---------------------------------------------------------------------------------------------- runs
async def sequential(endpoint: Endpoint, calls: Calls, n: int, *, warmup: int = 20, timeout_s: float = 30.0,
                     deadline_s: float = 120.0, keep_headers: Sequence[str] = ()) -> Samples:
    """``n`` requests one after another on one keep-alive connection."""
    conn = Connection(endpoint)
    out = Samples(endpoint.name)
    stop = time.monotonic() + deadline_s
    try:
        for i in range(warmup):
            await conn.send(_call(calls, -1 - i), timeout_s)
        t0 = time.perf_counter()
        for i in range(n):
            if time.monotonic() > stop:
                break
            try:
                out.add(await conn.send(_call(calls, i), timeout_s), keep_headers)
            except (OSError, TimeoutError) as exc:
                out.fail(exc)
        out.elapsed_s = time.perf_counter() - t0
    finally:
        conn.close()
    return out


async def alternate(a: Endpoint, calls_a: Calls, b: Endpoint, calls_b: Calls, n: int, *, warmup: int = 20,
                    timeout_s: float = 30.0, deadline_s: float = 180.0,
                    keep_headers: Sequence[str] = ()) -> tuple[Samples, Samples]:
    """Sequential A B A B …: both targets see the same machine state, so noise cancels in A − B."""
    sa, sb = await rotate([(a, calls_a), (b, calls_b)], n, warmup=warmup, timeout_s=timeout_s,
                          deadline_s=deadline_s, keep_headers=keep_headers)
    return sa, sb


async def rotate(targets: Sequence[tuple[Endpoint, Calls]], n: int, *, warmup: int = 20, timeout_s: float = 30.0,
                 deadline_s: float = 180.0, keep_headers: Sequence[str] = ()) -> list[Samples]:
    """Sequential round-robin over any number of targets (A B C A B C …), one connection each."""
    conns = [Connection(ep) for ep, _ in targets]
    samples = [Samples(ep.name) for ep, _ in targets]
    stop = time.monotonic() + deadline_s
    try:
        for i in range(warmup):
            for conn, (_, calls) in zip(conns, targets, strict=True):
                await conn.send(_call(calls, -1 - i), timeout_s)
        t0 = time.perf_counter()
        for i in range(n):
            if time.monotonic() > stop:
                break
            for conn, (_, calls), s in zip(conns, targets, samples, strict=True):
                try:
                    s.add(await conn.send(_call(calls, i), timeout_s), keep_headers)
                except (OSError, TimeoutError) as exc:
                    s.fail(exc)
        elapsed = time.perf_counter() - t0
        for s in samples:
            s.elapsed_s = elapsed
    finally:
        for conn in conns:
            conn.close()
    return samples


async def closed_loop(endpoint: Endpoint, calls: Calls, clients: int, *, requests: int, duration_s: float = 10.0,
                      warmup_s: float = 0.3, timeout_s: float = 30.0) -> Samples:
    """``clients`` concurrent clients, each sending its next request when the last one answers.

    Stops after ``requests`` answers or ``duration_s`` seconds, whichever comes first; answers during the
    first ``warmup_s`` seconds are not counted (connections and caches warm up).
    """
    out = Samples(endpoint.name)
    counter = iter(range(10**12))
    state = {"measuring": False, "done": 0}
    t_end = time.monotonic() + warmup_s + duration_s

    async def client() -> None:
        conn = Connection(endpoint)
        try:
            while state["done"] < requests and time.monotonic() < t_end:
                i = next(counter)
                try:
                    reply = await conn.send(_call(calls, i), timeout_s)
                except (OSError, TimeoutError) as exc:
                    if state["measuring"]:
                        out.fail(exc)
                    continue
                if state["measuring"]:
                    out.add(reply)
                    state["done"] += 1
        finally:
            conn.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(warmup_s)
    state["measuring"] = True
    t0 = time.perf_counter()
    await asyncio.gather(*tasks)
    out.elapsed_s = time.perf_counter() - t0
    return out


async def sweep(targets: Sequence[tuple[Endpoint, Calls]], levels: Sequence[int] = CONCURRENCY_LEVELS, *,
                requests: int = 4000, duration_s: float = 5.0,
                on_level: Callable[[int], None] | None = None) -> dict[str, dict[int, Summary]]:
    """The concurrency sweep, alternating targets at every level (A B at 1, A B at 2, …)."""
    results: dict[str, dict[int, Summary]] = {ep.name: {} for ep, _ in targets}
    for level in levels:
        for ep, calls in targets:
            s = await closed_loop(ep, calls, level, requests=requests, duration_s=duration_s)
            results[ep.name][level] = summarize(s)
        if on_level is not None:
            on_level(level)
    return results


def run(coro: Any) -> Any:
    """Run a coroutine on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# ---------------------------------------------------------------------------------------------- a trivial server
_TRIVIAL_BODY = b'{"ok":true}'
_TRIVIAL_REPLY = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                  + str(len(_TRIVIAL_BODY)).encode() + b"\r\n\r\n" + _TRIVIAL_BODY)


class _Trivial(asyncio.Protocol):
    """Answers every complete request head (+ Content-Length body) with a fixed reply."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = cast(asyncio.Transport, transport)
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[:end + 4 + length]
            self.t.write(_TRIVIAL_REPLY)


def serve_trivial(port: int, ready: Any = None, seconds: float = 600.0) -> None:
    """A trivial keep-alive HTTP server (blocking; for ceilings and tests, in another process)."""

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Trivial, "127.0.0.1", port)
        if ready is not None:
            ready.set()
        async with server:
            await asyncio.sleep(seconds)

    run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_trivial_server(seconds: float = 600.0) -> tuple[Any, int]:
    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=serve_trivial, args=(port, ready, seconds), daemon=True)
    proc.start()
    if not ready.wait(30):
        proc.kill()
        raise LoadgenError("the trivial server did not start")
    return proc, port


def ceiling(clients: int = 32, requests: int = 50_000, duration_s: float = 5.0) -> dict[str, float]:
    """The generator's own ceiling: req/s against a trivial server in another process."""
    proc, port = start_trivial_server()
    try:
        ep = Endpoint(port, name="trivial")
        raw = ep.request("/", b'{"x":1}')
        seq = summarize(run(sequential(ep, raw, 5000, warmup=200)))
        conc = summarize(run(closed_loop(ep, raw, clients, requests=requests, duration_s=duration_s)))
    finally:
        proc.kill()
        proc.join()
    return {"clients": clients, "throughput_rps": conc.throughput_rps, "p50_ms": conc.p50_ms,
            "p99_ms": conc.p99_ms, "sequential_p50_ms": seq.p50_ms, "sequential_p99_ms": seq.p99_ms,
            "sequential_rps": seq.throughput_rps}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="thrifty bench loadgen", description="the load generator's own ceiling")
    p.add_argument("what", choices=["ceiling"])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args(argv)
    result = ceiling(args.clients, duration_s=args.duration)
    print(", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()),
          f"(cpus={os.cpu_count()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
