"""Helpers shared by the dispatch/provider tests (importable; fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

import msgspec

from bench.fake_upstream import FakeUpstream
from models.schema import ModelEntry, Price, Route
from router.candidate import Candidate
from router.providers import ProviderConfig, RetryPolicy, Timeouts

FAST_TIMEOUTS = Timeouts(connect=1.0, read=1.0, total=2.0, ttft=0.5, stall=0.3)
FAST_RETRIES = RetryPolicy(attempts=3, backoff_base=0.001, backoff_max=0.005, max_retry_after=2.0)


# Each provider module under test, aimed at the fake upstream (base URL per wire format).
def provider_config(kind: str, upstream: FakeUpstream, name: str | None = None, **overrides: Any) -> ProviderConfig:
    presets: dict[str, dict[str, Any]] = {
        "openai": {"kind": "openai", "base_url": upstream.url + "/v1"},
        "openrouter": {"kind": "openai-compatible", "preset": "openrouter", "base_url": upstream.url + "/v1",
                       "params": {"site_url": "https://example.test", "app_name": "thrifty-tests"},
                       "extra_body": {"provider": {"order": ["anthropic"], "allow_fallbacks": False}}},
        "anthropic": {"kind": "anthropic", "base_url": upstream.url},
        "cortex": {"kind": "cortex", "base_url": upstream.url, "auth_token_type": "PROGRAMMATIC_ACCESS_TOKEN"},
        "simulated": {"kind": "simulated", "simulated": {"latency_ms": [0.0, 0.0]}},
    }
    raw: dict[str, Any] = {"name": name or kind, **presets[kind], "timeouts": FAST_TIMEOUTS, "retries": FAST_RETRIES}
    raw.update(overrides)
    return msgspec.convert(raw, ProviderConfig, from_attributes=True)


def candidate(provider: str, model: str, *, window: int = 8192,
              price: Price = Price(input=1.0, output=2.0)) -> Candidate:
    entry = ModelEntry(id=model, vendor="test", price=price, context_window=window, max_output=1024,
                       routes=(Route(provider=provider, model=model),))
    return Candidate(model=entry, route=entry.routes[0])
