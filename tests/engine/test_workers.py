"""Several proxy workers (real processes) share one data directory: cache and ledger."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from engine_support import base_config

from bench.fake_upstream import FakeUpstream
from engine.ledger import Ledger


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(180)
def test_two_workers_share_cache_and_ledger(upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg = base_config(tmp_path, upstream)
    path = tmp_path / "thrifty.yaml"
    path.write_text(yaml.safe_dump(cfg))
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(path), "serve", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as h:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if h.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
                time.sleep(0.2)
            prompts = [f"Explain topic number {i} in one short sentence." for i in range(24)]

            def ask(p: str) -> httpx.Response:
                # a new connection each time, several at once, so that both workers accept some
                return httpx.post(f"{url}/v1/chat/completions", headers={"connection": "close"}, timeout=30,
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
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    ledger = Ledger(Path(cfg["data_dir"]) / "ledger.sqlite3")
    rows = ledger.query("SELECT worker, cache FROM requests")
    ledger.close()
    assert len(rows) == 48
    assert sum(r["cache"] == "exact" for r in rows) == 24
    assert len({r["worker"] for r in rows}) == 2  # both workers served and wrote to the one ledger
