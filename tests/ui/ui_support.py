"""What the dashboard's browser tests (and the screenshot script) share: a proxy fed by the fake upstream,
and Debian's chromium driven by Playwright's Python package (never ``playwright install``)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.fake_upstream import FakeUpstream

CHROMIUM = "/usr/bin/chromium"
ADMIN_KEY = "adm-ui-test-key"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TENANTS = {
    "acme": {"keys": [{"name": "acme-1", "key": "sk-acme"}]},
    "globex": {"keys": [{"name": "globex-1", "key": "sk-globex"}]},
}


def ui_config(data_dir: Path, upstream: FakeUpstream, **extra: Any) -> dict[str, Any]:
    """A proxy whose only provider is the fake upstream (every catalog model), two tenants, the small
    hashing encoder (no model to load)."""
    cfg: dict[str, Any] = {
        "data_dir": str(data_dir),
        "providers": [{"name": "fake", "kind": "openai-compatible", "base_url": upstream.url + "/v1",
                       "retries": {"attempts": 1, "backoff_base": 0.01}}],
        "routes": {"fake": ["*"]},
        "dispatch": {"deadline_s": 10},
        "cache": {"encoder": "hashing"},
        "server": {"access_log": "off"},
        "tenants": TENANTS,
    }
    cfg.update(extra)
    return cfg


def ask(client: httpx.Client, prompt: str, key: str = "sk-acme", model: str = "auto") -> httpx.Response:
    return client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": model, "messages": [{"role": "user", "content": prompt}]})


def traffic(client: httpx.Client) -> list[httpx.Response]:
    """A little of everything: misses on several models, exact repeats, two tenants."""
    out = []
    for i in range(6):
        out.append(ask(client, f"What is the capital of country number {i}?"))
    for i in range(3):
        out.append(ask(client, f"What is the capital of country number {i}?"))  # exact hits
    out.append(ask(client, "Write a haiku about invoices", key="sk-globex", model="gpt-4o"))
    out.append(ask(client, "Summarise this: the ledger is the source of truth.", key="sk-globex",
                   model="claude-sonnet-4-5"))
    return out


@contextmanager
def browser() -> Iterator[Any]:
    """A headless chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="thrifty-chromium-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                    args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        try:
            yield ctx
        finally:
            ctx.close()
