"""The dashboard in real headless Chromium (Debian's package, driven by Playwright's Python package) against
a live proxy fed through the fake upstream: what the page shows is the ledger's; a budget, a routing rule
and the cache mode changed on the page govern the next request, survive a restart and show in the audit
panel; without a session (or with a wrong key) no data route answers."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import LiveServer
from ui_support import ADMIN_KEY, CHROMIUM, ask, browser, traffic, ui_config

from bench.fake_upstream import FakeUpstream, Reply
from engine import Engine
from engine.server import create_app

pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="needs Debian's chromium (.ci/run installs it: apt-get install chromium)")
WAIT_MS = 20_000  # a loaded 2-core machine: a poll may wait seconds for the CPU


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with browser() as ctx:
        yield ctx


@pytest.fixture
def ctx(chromium: Any) -> Iterator[Any]:
    chromium.clear_cookies()
    yield chromium
    for page in chromium.pages:  # a page left open would go on polling
        page.close()


@pytest.fixture
def proxy(tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``proxy()`` -> a live proxy (a second call: a restart on the same data dir); all stopped at the end."""
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN_KEY)
    cfg = ui_config(tmp_path / "data", upstream)
    started: list[LiveServer] = []

    def start() -> LiveServer:
        if started and started[-1].engine is not None:
            stop(started[-1])
        engine = Engine.from_config(cfg)
        live = LiveServer(create_app(engine), engine=engine)
        started.append(live)
        return live

    def stop(live: LiveServer) -> None:
        live.stop()
        assert live.engine is not None
        live.engine.ledger.close()
        live.engine.audit.close()
        live.engine = None

    yield start
    for live in started:
        if live.engine is not None:
            stop(live)


def sign_in(page: Any, url: str, key: str = ADMIN_KEY) -> None:
    page.goto(url + "/")
    page.wait_for_selector("#login:not([hidden])", timeout=WAIT_MS)
    page.fill("#login-key", key)
    page.click("#login-form button[type=submit]")


def open_panel(page: Any, url: str, panel: str) -> None:
    """Show ``panel`` and wait for a load that started after now (the page polls every second)."""
    mark = time.time() * 1000  # before the navigation: Controls loads once (it does not poll), maybe at once
    page.goto(f"{url}/ui#{panel}")
    page.wait_for_function(f"() => Number(document.getElementById('{panel}').dataset.loaded || 0) > {mark}",
                           timeout=WAIT_MS)


def value(page: Any, key: str) -> float:
    return float(page.get_attribute(f'[data-k="{key}"]', "data-value"))


def text(page: Any, key: str) -> str:
    return str(page.text_content(f'[data-k="{key}"]'))


def test_wrong_key_loads_no_data(proxy: Any, ctx: Any) -> None:
    live = proxy()
    with httpx.Client(base_url=live.url) as h:
        traffic(h)
        data_routes = [(m, r.path.replace("{entry_id}", "1")) for r in live.server.config.app.routes
                       for m in sorted(r.methods or ()) if m != "HEAD" and r.path.startswith("/admin")]
        data_routes.append(("GET", "/ui/session"))
        assert len(data_routes) >= 20
        for method, path in data_routes:
            for headers in ({}, {"authorization": "Bearer wrong-key"}, {"cookie": "thrifty_session=forged"},
                            {"x-thrifty-admin-key": ADMIN_KEY[:-1]}):
                r = h.request(method, path, headers=headers, content=b"{}")
                assert r.status_code == 401, (method, path, headers, r.status_code)
                assert ADMIN_KEY not in r.text

    page = ctx.new_page()
    sign_in(page, live.url, key="not-the-admin-key")
    page.wait_for_selector("#login-error:has-text('invalid admin key')", timeout=WAIT_MS)
    assert page.is_hidden("#nav") and page.is_hidden("#overview")
    assert page.eval_on_selector("#ov-cards", "e => e.children.length") == 0
    assert not [c for c in ctx.cookies() if c["name"] == "thrifty_session"]
    assert page.evaluate("async () => (await fetch('/admin/overview')).status") == 401

    # The right key: a session cookie that scripts cannot read and that never holds the key.
    page.fill("#login-key", ADMIN_KEY)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#overview[data-loaded]", timeout=WAIT_MS)
    cookie = next(c for c in ctx.cookies() if c["name"] == "thrifty_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and ADMIN_KEY not in cookie["value"]
    assert page.evaluate("document.cookie") == ""
    assert ADMIN_KEY not in page.url
    assert page.evaluate("async () => (await fetch('/admin/overview')).status") == 200
    # A change with the cookie but without the page's CSRF header is refused.
    assert page.evaluate("""async () => (await fetch('/admin/controls', {method: 'PATCH',
        headers: {'content-type': 'application/json'}, body: '{"cache": {"mode": "off"}}'})).status""") == 403
    # Signing out ends the session on the server: the old cookie opens nothing.
    page.click("#logout")
    page.wait_for_selector("#login:not([hidden])", timeout=WAIT_MS)
    with httpx.Client(base_url=live.url) as h:
        r = h.get("/admin/overview", headers={"cookie": f"thrifty_session={cookie['value']}"})
        assert r.status_code == 401
    assert live.engine is not None and live.engine.settings.raw.cache.mode == "on"


def test_numbers_shown_equal_the_ledger(proxy: Any, ctx: Any, upstream: FakeUpstream) -> None:
    live = proxy()
    with httpx.Client(base_url=live.url) as h:
        assert [r.status_code for r in traffic(h)] == [200] * 11
        upstream.script(Reply(status=503), model="gpt-4.1")  # one upstream failure, pinned: no fallback
        failed = ask(h, "This one fails upstream", model="gpt-4.1")
        assert failed.status_code >= 500
    engine = live.engine
    assert engine is not None
    engine.ledger.flush()
    q = engine.ledger.query
    total = q("SELECT COUNT(*) AS n, SUM(cost_usd) AS spend, SUM(saved_usd) AS saved, "
              "SUM(cache IN ('exact', 'hit')) AS hits, SUM(status >= 400) AS errors FROM requests")[0]
    assert total["n"] == 12 and total["hits"] == 3 and total["errors"] == 1

    page = ctx.new_page()
    sign_in(page, live.url)
    open_panel(page, live.url, "overview")
    assert value(page, "requests") == total["n"] and text(page, "requests") == "12"
    assert value(page, "spend_today") == pytest.approx(total["spend"], rel=1e-12)
    assert value(page, "spend_month") == pytest.approx(total["spend"], rel=1e-12)
    assert value(page, "saved_cache") == pytest.approx(total["saved"], rel=1e-12)
    assert value(page, "hit_rate") == pytest.approx(3 / 12) and text(page, "hit_rate") == "25 %"
    assert value(page, "error_rate") == pytest.approx(1 / 12) and text(page, "error_rate") == "8.3 %"
    shown = text(page, "spend_today")
    assert re.fullmatch(r"\$0\.\d+", shown) and float(shown[1:]) == pytest.approx(total["spend"], rel=5e-3)

    open_panel(page, live.url, "spend")
    for row in q("SELECT COALESCE(model, '') AS model, SUM(cost_usd) AS s FROM requests GROUP BY model"):
        assert value(page, f"spend:model:{row['model']}") == pytest.approx(row["s"], rel=1e-12)
    for row in q("SELECT tenant, SUM(cost_usd) AS s FROM requests GROUP BY tenant"):
        assert value(page, f"spend:tenant:{row['tenant']}") == pytest.approx(row["s"], rel=1e-12)
    for row in q("SELECT virtual_key, SUM(cost_usd) AS s FROM requests GROUP BY virtual_key"):
        assert value(page, f"spend:key:{row['virtual_key']}") == pytest.approx(row["s"], rel=1e-12)

    open_panel(page, live.url, "requests")
    rows = q("SELECT request_id, cost_usd, routing FROM requests ORDER BY ts DESC")
    assert page.locator("tr[data-request]").count() == len(rows)
    for row in rows:
        assert value(page, f"cost:{row['request_id']}") == pytest.approx(row["cost_usd"], rel=1e-12)
    routed = next(r for r in rows if r["routing"])
    page.click(f'tr[data-request="{routed["request_id"]}"] button')
    detail = page.locator(f"#why-{routed['request_id']}")
    detail.wait_for(timeout=WAIT_MS)
    chosen = __import__("json").loads(routed["routing"])["chosen"]
    assert f"Chose {chosen}" in detail.inner_text()

    open_panel(page, live.url, "cache")
    assert value(page, "ca_entries") == engine.cache.stats().entries == 8  # 6 + 2 misses stored
    assert value(page, "entries:acme/default") == 6 and value(page, "entries:globex/default") == 2

    open_panel(page, live.url, "providers")
    for row in q("SELECT provider || '/' || model AS d, COUNT(*) AS n FROM requests WHERE provider = 'fake' GROUP BY d"):
        assert value(page, f"dep:{row['d']}") == row["n"]
    attempts = page.locator("ol.attempts li").all_inner_texts()
    assert attempts and attempts[0].startswith("fake/gpt-4.1") and "503" in attempts[0], attempts


def _apply(page: Any, control: str, fill: dict[str, str], select: dict[str, str] | None = None) -> None:
    form = page.locator(f'form[data-control="{control}"]')
    for name, v in fill.items():
        form.locator(f'[name="{name}"]').fill(v)
    for name, v in (select or {}).items():
        form.locator(f'[name="{name}"]').select_option(v)
    form.locator("button[type=submit]").click()


def test_controls_govern_the_next_request_survive_a_restart_and_are_audited(proxy: Any, ctx: Any) -> None:
    live = proxy()
    page = ctx.new_page()
    sign_in(page, live.url)
    open_panel(page, live.url, "controls")
    actor = str(page.text_content("#who"))
    assert actor.startswith("admin:")

    # A routing rule: every request of tenant globex goes to gpt-4o-mini.
    rule = '[{"name": "globex-mini", "tenant": "globex", "only": ["gpt-4o-mini"]}]'
    _apply(page, "rules", {"rules": rule})
    page.wait_for_selector("#status:has-text('Applied: routing.rules')", timeout=WAIT_MS)
    with httpx.Client(base_url=live.url) as h:
        assert ask(h, "Which model is this?", key="sk-globex").headers["x-thrifty-model"] == "gpt-4o-mini"
        assert ask(h, "Same prompt twice", key="sk-globex").headers["x-thrifty-cache"] == "miss"
        assert ask(h, "Same prompt twice", key="sk-globex").headers["x-thrifty-cache"] == "exact"

    # A wrong value is refused on the page with the config file's message, and changes nothing.
    _apply(page, "cache", {"threshold": "2"})
    page.wait_for_selector('form[data-control="cache"] .error:has-text("threshold must be between 0 and 1")',
                           timeout=WAIT_MS)
    # The cache mode: off.
    page.locator('form[data-control="cache"] [name="threshold"]').fill("")
    _apply(page, "cache", {}, select={"mode": "off"})
    page.wait_for_selector("#status:has-text('Applied: cache.mode')", timeout=WAIT_MS)
    with httpx.Client(base_url=live.url) as h:
        assert ask(h, "Same prompt twice", key="sk-globex").headers["x-thrifty-cache"] == "bypass"

    # A budget: acme's daily hard limit below what one request costs.
    with httpx.Client(base_url=live.url) as h:
        assert ask(h, "Before the budget").status_code == 200
    _apply(page, "budget:tenant:acme", {"daily_hard": "0.000001"})
    page.wait_for_selector("#status:has-text('Applied: tenants.acme.budget')", timeout=WAIT_MS)
    with httpx.Client(base_url=live.url) as h:
        over = ask(h, "After the budget")
        assert over.status_code == 429 and over.json()["error"]["type"] == "budget_exceeded"
        assert ask(h, "Another tenant is not limited", key="sk-globex").status_code == 200

    # Restart on the same data dir: the overlay is merged over the config.
    live = proxy()
    assert live.engine is not None
    raw = live.engine.settings.raw
    assert raw.cache.mode == "off" and [r.name for r in raw.routing.rules] == ["globex-mini"]
    with httpx.Client(base_url=live.url) as h:
        assert ask(h, "After the restart").status_code == 429
        answer = ask(h, "Which model after the restart?", key="sk-globex")
        assert answer.headers["x-thrifty-model"] == "gpt-4o-mini" and answer.headers["x-thrifty-cache"] == "bypass"

    # The session lives in the data dir too: the page goes on without a new sign-in, and the audit panel
    # shows each change with who made it, old -> new.
    open_panel(page, live.url, "audit")
    for target, old, new in (("cache.mode", "on", "off"), ("routing.rules", "[]", "globex-mini"),
                             ("tenants.acme.budget", "–", '"hard":0.000001')):
        row = page.locator(f'tr[data-target="{target}"]')
        assert row.count() == 1, target
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == actor and cells[2] == f"config.set {target}"
        assert old in cells[3] and new in cells[4].replace("1e-06", "0.000001"), cells
    open_panel(page, live.url, "controls")
    assert page.locator('form[data-control="cache"] [name="mode"]').input_value() == "off"
