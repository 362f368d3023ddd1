"""Screenshots of every dashboard panel for the README (docs/ui-*.png), from a live proxy fed with real
traffic through the fake upstream for a few minutes (misses, exact and semantic hits, upstream errors,
feedback labels, budgets), in headless chromium. Not a test: run it by hand.

    .venv/bin/python tests/ui/screenshots.py --minutes 6 --out docs
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1]),
                str(Path(__file__).resolve().parent)]

from live_server import LiveServer  # noqa: E402
from ui_support import ADMIN_KEY, ask, browser, ui_config  # noqa: E402

from bench.fake_upstream import FakeUpstream, Reply  # noqa: E402
from engine import Engine  # noqa: E402

PANELS = ("overview", "spend", "cache", "requests", "providers", "controls", "audit")
TOPICS = ["the capital of France", "how to reverse a list in Python", "the boiling point of water",
          "a haiku about invoices", "why the sky is blue", "what a semantic cache is", "how TCP handshakes work",
          "the difference between a mutex and a semaphore", "a limerick about budgets", "what LMDB is"]
BUDGETS = {"acme": {"daily_usd": {"soft": 0.002, "hard": 0.01}, "monthly_usd": {"soft": 0.05, "hard": 0.2}},
           "globex": {"daily_usd": {"soft": 0.0005, "hard": 0.004}, "on_hard": "downgrade"}}


def feed(live: LiveServer, upstream: FakeUpstream, seconds: float) -> None:
    rng = random.Random(7)
    end = time.monotonic() + seconds
    with httpx.Client(base_url=live.url, timeout=30) as h:
        while time.monotonic() < end:
            minute = int(time.monotonic() // 60)
            for _ in range(rng.randint(3, 8) + minute % 4):
                topic = rng.choice(TOPICS)
                phrasing = rng.choice(["Tell me {}.", "Tell me {}", "tell me {}.", "Explain {}."])
                key = rng.choice(["sk-acme", "sk-acme", "sk-globex"])
                model = rng.choice(["auto", "auto", "auto", "gpt-4o", "claude-sonnet-4-5", "gpt-4o-mini"])
                if rng.random() < 0.04:
                    upstream.script(Reply(status=503))
                r = ask(h, phrasing.format(topic), key=key, model=model)
                if r.headers.get("x-thrifty-cache") in ("hit", "exact") and rng.random() < 0.3:
                    h.post("/v1/feedback", headers={"authorization": f"Bearer {key}"},
                           json={"request_id": r.headers["x-thrifty-request-id"],
                                 "rating": "bad" if rng.random() < 0.1 else "good"})
            time.sleep(rng.uniform(2, 6))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args()
    os.environ["THRIFTY_ADMIN_KEY"] = ADMIN_KEY
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream() as upstream:
        cfg = ui_config(Path(tmp) / "data", upstream, log_content=True)
        for tenant, budget in BUDGETS.items():
            cfg["tenants"][tenant] = {**cfg["tenants"][tenant], "budget": budget}
        live = LiveServer.of(Engine.from_config(cfg))
        try:
            feed(live, upstream, args.minutes * 60)
            with httpx.Client(base_url=live.url) as h:  # two changes, for the audit panel
                auth = {"authorization": f"Bearer {ADMIN_KEY}"}
                h.patch("/admin/controls", headers=auth, json={"cache": {"ttl_s": 86400}})
                h.put("/admin/routing/rules", headers=auth,
                      json=[{"name": "code-to-mini", "task": "code", "prefer": ["gpt-4o-mini"]}])
            assert live.engine is not None
            live.engine.ledger.flush()
            shoot(live, args.out)
        finally:
            live.stop()


def shoot(live: LiveServer, out: Path) -> None:
    with browser() as ctx:
        page = ctx.new_page()
        page.goto(live.url + "/")
        page.fill("#login-key", ADMIN_KEY)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#overview[data-loaded]")
        page.select_option("#window", "1h")
        page.select_option("#refresh", "0")
        # One change through the page, so the audit panel shows a dashboard session as well as the key.
        page.goto(f"{live.url}/ui#controls")
        page.wait_for_selector('form[data-control="budget:key:acme-1"]')
        form = page.locator('form[data-control="budget:key:acme-1"]')
        form.locator('[name="daily_soft"]').fill("0.005")
        form.locator('[name="daily_hard"]').fill("0.02")
        form.locator("button[type=submit]").click()
        page.wait_for_selector("#status:has-text('Applied')")
        for panel in PANELS:
            page.goto(f"{live.url}/ui#{panel}")
            page.wait_for_function(f"() => document.getElementById('{panel}').dataset.loaded")
            if panel == "cache":
                page.fill("#probe-prompt", "Tell me why the sky is blue?")
                page.fill("#probe-tenant", "acme")
                page.click("#probe-form button[type=submit]")
                page.wait_for_selector("[data-k=would_serve]")
            if panel == "requests":
                page.locator("tr[data-request]:has(.pill.miss) button").first.click()
                page.wait_for_selector("tr.detail")
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / f"ui-{panel}.png"), full_page=panel in ("cache", "controls"), type="png")
        phone = ctx.new_page()
        phone.set_viewport_size({"width": 390, "height": 844})
        phone.goto(f"{live.url}/ui#overview")
        phone.wait_for_selector("#overview[data-loaded]")
        phone.screenshot(path=str(out / "ui-phone.png"), type="png")


if __name__ == "__main__":
    main()
