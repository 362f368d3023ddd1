"""Several proxy workers (real processes) share one data directory: cache and ledger."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from engine_support import base_config
from served import Served

from bench.fake_upstream import FakeUpstream
from engine.ledger import Ledger


@pytest.mark.timeout(180)
def test_two_workers_share_cache_and_ledger(upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg = base_config(tmp_path, upstream)
    with Served(cfg, tmp_path, workers=2) as served, httpx.Client(base_url=served.url, timeout=30) as h:
        prompts = [f"Explain topic number {i} in one short sentence." for i in range(24)]

        def ask(p: str) -> httpx.Response:
            # a new connection each time, several at once, so that both workers accept some
            return httpx.post(f"{served.url}/v1/chat/completions", headers={"connection": "close"}, timeout=30,
                              json={"messages": [{"role": "user", "content": p}]})

        with ThreadPoolExecutor(8) as pool:
            first = list(pool.map(ask, prompts))
        assert all(r.status_code == 200 for r in first)
        workers = {r.headers["x-thrifty-request-id"] for r in first}
        assert len(workers) == 24
        time.sleep(1.0)  # DESIGN: what one process writes, another finds within 1 s
        with ThreadPoolExecutor(8) as pool:
            second = list(pool.map(ask, prompts))
        assert [r.headers["x-thrifty-cache"] for r in second] == ["exact"] * 24
        metrics = h.get("/metrics").text
        assert "thrifty_requests_total" in metrics
        assert len(upstream.requests) == 24
    ledger = Ledger(Path(cfg["data_dir"]) / "ledger.sqlite3")
    rows = ledger.query("SELECT worker, cache FROM requests")
    ledger.close()
    assert len(rows) == 48
    assert sum(r["cache"] == "exact" for r in rows) == 24
    assert len({r["worker"] for r in rows}) == 2  # both workers served and wrote to the one ledger
