"""Fixtures for dispatch and provider tests: one loopback fake upstream, providers aimed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from dispatch_helpers import provider_config

from bench.fake_upstream import FakeUpstream
from router.providers import build_provider
from router.providers.base import Provider


@pytest.fixture
async def make_provider(upstream: FakeUpstream) -> AsyncIterator[Callable[..., Provider]]:
    """Build providers aimed at the fake upstream; their pooled clients are closed after the test."""
    built: list[Provider] = []

    def make(kind: str, name: str | None = None, **overrides: Any) -> Provider:
        provider = build_provider(provider_config(kind, upstream, name, **overrides))
        built.append(provider)
        return provider

    yield make
    for provider in built:
        await provider.aclose()
