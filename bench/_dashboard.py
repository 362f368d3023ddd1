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
                t0 = time.perf_counter()
                h.get("/admin/overview", params={"window": "24h"}).raise_for_status()
                stats.setdefault("poll_ms", []).append((time.perf_counter() - t0) * 1000)
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


def _prefill(data_dir: Path, rows: int, seed: int = 3) -> None:
    """``rows`` ledger rows spread over the last 24 hours (several models, tenants, outcomes), so the
    dashboard's queries run on a ledger of a realistic size. Synthetic: for the cost measurement only."""
    import random

    from engine.ledger import Ledger, UsageRecord, new_request_id

    rng = random.Random(seed)
    now = time.time()
    ledger = Ledger(data_dir / "ledger.sqlite3", log_content=False, flush_interval=0.05, journal=False, owner="prefill")
    try:
        for _ in range(rows):
            cache = rng.choice(["miss", "miss", "exact", "hit", "bypass"])
            ledger.record(UsageRecord(
                request_id=new_request_id(), ts=now - rng.uniform(0, 86400), tenant=rng.choice(["acme", "globex"]),
                virtual_key=rng.choice(["k1", "k2", "k3"]), cache=cache, status=rng.choice([200] * 30 + [502]),
                model=rng.choice(["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5"]),
                provider="cache" if cache in ("exact", "hit") else "fake", cost_usd=rng.uniform(0, 0.01),
                saved_usd=rng.uniform(0, 0.01) if cache in ("exact", "hit") else 0.0,
                latency_ms=rng.uniform(1, 900), overhead_ms=rng.uniform(0.1, 3), prompt_tokens=rng.randint(10, 2000),
                completion_tokens=rng.randint(10, 800)))
        ledger.flush()
    finally:
        ledger.close()


def ab(blocks: int, per_block: int, rows: int, out: Path) -> dict[str, Any]:
    """Interleaved blocks with and without the dashboard's polling (A B B A …) on one proxy: sequential
    added latency (cache off, proxy and upstream alternated request by request) and 32-client throughput
    per block; the two conditions see the same machine drift."""
    from bench import loadgen as lg
    from bench import workload
    from bench._procs import BENCH_MODEL, fake_upstream, thrifty_config, thrifty_serve

    out.mkdir(parents=True, exist_ok=True)
    per: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="thrifty-dashboard-ab-") as tmp:
        work = Path(tmp)
        _prefill(work / "data", rows)
        with fake_upstream(work) as up:
            config = thrifty_config(up.port, work / "data")
            with thrifty_serve(config, work, env={"THRIFTY_ADMIN_KEY": ADMIN_KEY}) as proxy:
                thrifty, direct = lg.Endpoint(proxy.port, name="thrifty"), lg.Endpoint(up.port, name="direct")
                body = workload.chat_bytes(workload.prompt(40, 1), model=BENCH_MODEL)
                via = thrifty.request("/v1/chat/completions", body, {"x-thrifty-cache-mode": "off"})
                raw = direct.request("/v1/chat/completions", body)
                order = [m for i in range(blocks) for m in (("off", "on") if i % 2 == 0 else ("on", "off"))]
                for mode in order:
                    stats: dict[str, Any] = {"polls": 0}
                    with (_poller(proxy.port, stats) if mode == "on" else _nothing()):
                        time.sleep(1.5 if mode == "on" else 0.0)  # the first poll has landed
                        sa, sb = lg.run(lg.alternate(thrifty, via, direct, raw, per_block, warmup=20,
                                                     keep_headers=("x-thrifty-overhead-ms",)))
                        tput = lg.run(lg.sweep([(thrifty, via)], (32,), requests=4000, duration_s=3.0))
                    a, b = lg.summarize(sa), lg.summarize(sb)
                    over = sorted(float(v) for v in sa.header_values.get("x-thrifty-overhead-ms", []))
                    per[mode].append({"added_p50_ms": a.p50_ms - b.p50_ms, "added_p99_ms": a.p99_ms - b.p99_ms,
                                      "server_p50_ms": over[len(over) // 2] if over else float("nan"),
                                      "server_p99_ms": over[int(len(over) * 0.99)] if over else float("nan"),
                                      "rps_32": tput["thrifty"][32].throughput_rps, "polls": stats["polls"],
                                      "poll_ms_median": sorted(stats.get("poll_ms", [0.0]))[len(stats.get("poll_ms", [0.0])) // 2]})
    result = {"blocks": blocks, "per_block": per_block, "prefilled_rows": rows, "runs": per}
    (out / "dashboard_ab.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


@contextmanager
def _nothing() -> Iterator[None]:
    yield


if __name__ == "__main__":
    if sys.argv[1] == "ab":
        import argparse

        ap = argparse.ArgumentParser(prog="python -m bench._dashboard ab")
        ap.add_argument("--blocks", type=int, default=6)
        ap.add_argument("--per-block", type=int, default=600)
        ap.add_argument("--rows", type=int, default=100_000)
        ap.add_argument("--out", type=Path, default=Path("results/ui"))
        a = ap.parse_args(sys.argv[2:])
        print(json.dumps(ab(a.blocks, a.per_block, a.rows, a.out), indent=1))
    else:
        _run_browser(int(sys.argv[1]), Path(sys.argv[2]))
