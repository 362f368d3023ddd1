"""What the scale tests import by name: a replica's config on a shared Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.fake_upstream import FakeUpstream

ADMIN_KEY = "adm-scale-test"


def replica_config(tmp_path: Path, i: int, upstream: FakeUpstream, redis_url: str | None, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "data_dir": str(tmp_path / f"replica{i}"),
        "providers": [{"name": "fake", "kind": "openai-compatible", "base_url": upstream.url + "/v1",
                       "retries": {"attempts": 1, "backoff_base": 0.01}}],
        "routes": {"fake": ["*"]},
        "dispatch": {"deadline_s": 10},
        "cache": {"encoder": "hashing"},
        "server": {"admin_key_env": "THRIFTY_SCALE_ADMIN_KEY", "access_log": "off"},
        "ledger": {"flush_interval_s": 0.01},
    }
    if redis_url is not None:
        cfg["state"] = {"url": redis_url, "timeout_ms": 1000, "retry_s": 0.2}  # a loaded 2-core CI box
    cfg.update(extra)
    return cfg


def tenants(budget: dict[str, Any] | None = None, rate_limit: dict[str, Any] | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {"keys": [{"name": "acme-1", "key": "sk-acme"}]}
    if budget is not None:
        t["budget"] = budget
    if rate_limit is not None:
        t["rate_limit"] = rate_limit
    return {"acme": t}


def chat(prompt: str, model: str = "gpt-4o") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


AUTH = {"authorization": "Bearer sk-acme"}


def until(fn: Callable[[], bool], timeout: float = 2.0, poll_s: float = 0.001) -> float:
    """Seconds until ``fn()`` is true (polled every ``poll_s``); an AssertionError after ``timeout``."""
    t0 = time.perf_counter()
    while not fn():
        if time.perf_counter() - t0 > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(poll_s)
    return time.perf_counter() - t0
