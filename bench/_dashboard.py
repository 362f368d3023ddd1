"""The dashboard open during a benchmark (``thrifty bench proxy --dashboard browser|poll``).

``browser``: headless chromium (Debian's package, through Playwright's Python package) signed in to
``/ui`` on the Overview panel, refreshing every second, as a person would leave it open. ``poll``: the same
JSON calls the Overview panel makes each second (``GET /admin/overview``), from a thread, without a browser:
the gateway's share of the cost alone, for a machine where chromium's own CPU would be the noise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ADMIN_KEY = "bench-dashboard-admin-key"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def dashboard_open(port: int, mode: str) -> Iterator[dict[str, Any]]:
    """While inside: the dashboard polls the proxy on ``port`` every second. Yields counters."""
    stats: dict[str, Any] = {"mode": mode, "polls": 0}
    if mode == "poll":
        with _poller(port, stats):
            yield stats
    elif mode == "browser":
        with _browser(port, stats):
            yield stats
    else:
        raise ValueError(f"dashboard mode must be browser or poll, got {mode!r}")


@contextmanager
def _poller(port: int, stats: dict[str, Any]) -> Iterator[None]:
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as h:
            h.post("/ui/login", json={"key": ADMIN_KEY}).raise_for_status()
            while not stop.wait(1.0):
                h.get("/admin/overview", params={"window": "24h"}).raise_for_status()
                stats["polls"] += 1

    t = threading.Thread(target=run, name="dashboard-poll", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=10)


@contextmanager
def _browser(port: int, stats: dict[str, Any]) -> Iterator[None]:
    """chromium in a process of its own (Playwright's sync API wants its thread to itself)."""
    with tempfile.TemporaryDirectory(prefix="thrifty-bench-dashboard-") as tmp:
        stop = Path(tmp) / "stop"
        proc = subprocess.Popen([sys.executable, "-m", "bench._dashboard", str(port), str(stop)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise RuntimeError(f"the dashboard browser did not start: {line!r}")
        try:
            yield
        finally:
            stop.touch()
            out, _ = proc.communicate(timeout=60)
            stats.update(json.loads(out.strip().splitlines()[-1]))


def _run_browser(port: int, stop: Path) -> None:
    from playwright.sync_api import sync_playwright

    polls = 0

    def seen(request: Any) -> None:
        nonlocal polls
        polls += "/admin/overview" in request.url

    with tempfile.TemporaryDirectory(prefix="thrifty-bench-chromium-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=ARGS)
        page = ctx.new_page()
        page.on("request", seen)
        page.goto(f"http://127.0.0.1:{port}/ui")
        page.fill("#login-key", ADMIN_KEY)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#overview[data-loaded]", timeout=60_000)
        print("ready", flush=True)
        started = time.monotonic()
        while not stop.exists():
            page.wait_for_timeout(500)  # the page refreshes itself every second; this only pumps events
        seconds = time.monotonic() - started
        ctx.close()
    print(json.dumps({"polls": polls, "seconds": round(seconds, 1)}), flush=True)


if __name__ == "__main__":
    _run_browser(int(sys.argv[1]), Path(sys.argv[2]))
