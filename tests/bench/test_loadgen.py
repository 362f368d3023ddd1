"""The load generator against a tiny local server: parsing, counting, bounds, A/B arithmetic."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import numpy as np
import pytest

from bench import loadgen as lg


class _Tiny(asyncio.Protocol):
    """Replies by path: /ok JSON, /err 500, /sse chunked stream, /close with Connection: close, /slow."""

    served = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = cast(asyncio.Transport, transport)
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buf[:end]).decode()
            length = next((int(line.split(":")[1]) for line in head.split("\r\n")
                           if line.lower().startswith("content-length:")), 0)
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[:end + 4 + length]
            type(self).served += 1
            path = head.split(" ")[1]
            asyncio.get_running_loop().create_task(self.reply(path))

    async def reply(self, path: str) -> None:
        if path == "/ok":
            body = b'{"ok":true}'
            self.t.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nx-thrifty-cache: hit\r\n\r\n%s" % (len(body), body))
        elif path == "/err":
            self.t.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops")
        elif path == "/close":
            self.t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            self.t.close()
        elif path == "/slow":
            await asyncio.sleep(0.02)
            self.t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        elif path == "/sse":
            self.t.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n")
            for event in (b"data: {\"a\":1}\n\n", b"data: [DONE]\n\n"):
                self.t.write(b"%x\r\n%s\r\n" % (len(event), event))
                await asyncio.sleep(0.01)
            self.t.write(b"0\r\n\r\n")


@asynccontextmanager
async def tiny() -> AsyncIterator[lg.Endpoint]:
    server = await asyncio.get_running_loop().create_server(_Tiny, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield lg.Endpoint(port, name="tiny")
    finally:
        server.close()
        await server.wait_closed()


def arun(coro: Any) -> Any:
    return asyncio.run(coro)


def test_sequential_counts_and_percentiles() -> None:
    async def go() -> lg.Samples:
        async with tiny() as ep:
            return await lg.sequential(ep, ep.request("/ok", b"{}"), 200, warmup=5, keep_headers=("x-thrifty-cache",))

    s = arun(go())
    assert s.ok == 200 and s.errors == 0 and s.statuses == {200: 200}
    assert s.header_values["x-thrifty-cache"] == ["hit"] * 200
    summ = lg.summarize(s)
    assert summ.n == 200
    assert 0 < summ.p50_ms <= summ.p95_ms <= summ.p99_ms <= summ.max_ms
    assert summ.throughput_rps > 0


def test_errors_are_counted_not_timed() -> None:
    async def go() -> lg.Samples:
        async with tiny() as ep:
            return await lg.sequential(ep, lambda i: ep.request("/err" if i % 2 else "/ok", b"{}"), 10, warmup=0)

    s = arun(go())
    assert s.ok == 5 and s.errors == 5 and s.statuses == {200: 5, 500: 5}
    assert s.last_error is not None and "500" in s.last_error


def test_chunked_stream_body_and_ttfb() -> None:
    async def go() -> lg.Samples:
        async with tiny() as ep:
            conn = lg.Connection(ep)
            reply = await conn.send(ep.request("/sse", b"{}"))
            assert reply.body == b'data: {"a":1}\n\ndata: [DONE]\n\n'
            conn.close()
            return await lg.sequential(ep, ep.request("/sse", b"{}"), 5, warmup=0)

    s = arun(go())
    ttfb, total = lg.summarize(s, ttfb=True), lg.summarize(s)
    assert ttfb.p50_ms < total.p50_ms  # the first event comes ~10 ms before the end
    assert total.p50_ms - ttfb.p50_ms > 5


def test_reconnects_after_connection_close() -> None:
    async def go() -> lg.Samples:
        async with tiny() as ep:
            return await lg.sequential(ep, ep.request("/close", b"{}"), 5, warmup=0)

    s = arun(go())
    assert s.ok == 5 and s.errors == 0


def test_closed_loop_bounded_by_count_and_time() -> None:
    async def go(requests: int, duration: float) -> tuple[lg.Samples, float]:
        async with tiny() as ep:
            t = time.monotonic()
            s = await lg.closed_loop(ep, ep.request("/slow", b"{}"), 4, requests=requests, duration_s=duration,
                                     warmup_s=0.05)
            return s, time.monotonic() - t

    by_count, _ = arun(go(40, 30.0))
    assert 40 <= by_count.ok <= 40 + 4  # in-flight requests finish after the count is reached
    by_time, elapsed = arun(go(10**9, 0.3))
    assert elapsed < 2.0
    assert by_time.ok > 0
    # 4 clients, 20 ms each: about 200 req/s, never thousands
    assert lg.summarize(by_time).throughput_rps < 400


def test_concurrency_multiplies_throughput() -> None:
    async def go() -> dict[str, dict[int, lg.Summary]]:
        async with tiny() as ep:
            return await lg.sweep([(ep, ep.request("/slow", b"{}"))], (1, 8), requests=10**6, duration_s=0.4)

    res = arun(go())["tiny"]
    assert res[8].throughput_rps > 4 * res[1].throughput_rps


def test_alternate_interleaves_targets() -> None:
    async def go() -> tuple[lg.Samples, lg.Samples, int]:
        async with tiny() as a, tiny() as b:
            _Tiny.served = 0
            sa, sb = await lg.alternate(a, a.request("/slow", b"{}"), b, b.request("/ok", b"{}"), 10, warmup=1)
            return sa, sb, _Tiny.served

    sa, sb, served = arun(go())
    assert sa.ok == sb.ok == 10 and served == 22
    add = lg.added(lg.summarize(sa), lg.summarize(sb))
    assert add["p50_ms"] > 15  # /slow sleeps 20 ms, /ok does not


def test_added_is_per_percentile_difference() -> None:
    a = lg.Summary(10, 0, 3.0, 2.0, 4.0, 5.0, 6.0)
    b = lg.Summary(10, 0, 1.0, 0.5, 1.0, 1.5, 2.0)
    assert lg.added(a, b) == {"p50_ms": 1.5, "p95_ms": 3.0, "p99_ms": 3.5, "mean_ms": 2.0}


def test_percentiles_match_numpy() -> None:
    values = list(range(1_000_000, 101_000_000, 1_000_000))  # 1..100 ms
    p50, p95, p99 = lg.percentiles_ms(values)
    assert p50 <= p95 <= p99
    assert p50 == pytest.approx(float(np.percentile(np.arange(1, 101), 50)))
    assert p99 == pytest.approx(float(np.percentile(np.arange(1, 101), 99)))
    assert all(np.isnan(lg.percentiles_ms([])))


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.5", "8.8.8.8", "example.com"])
def test_only_loopback_targets(host: str) -> None:
    with pytest.raises(lg.LoadgenError, match="loopback"):
        lg.Endpoint(80, host=host)


def test_request_encoding() -> None:
    raw = lg.Endpoint(8080).request("/v1/x", b'{"a":1}', {"x-thrifty-cache-mode": "off"})
    head, body = raw.split(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/x HTTP/1.1\r\n")
    assert b"Content-Length: 7" in head and b"x-thrifty-cache-mode: off" in head
    assert body == b'{"a":1}'


def test_ceiling_against_trivial_server_process() -> None:
    result = lg.ceiling(clients=8, requests=3000, duration_s=1.0)
    assert result["throughput_rps"] > 1000  # far above what the proxy needs to be measured
