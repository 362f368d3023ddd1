"""Fixtures for the attacker's suite: real proxies on 127.0.0.1 in front of the fake upstream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from security_support import ADMIN_KEY, PROVIDER_KEY, LiveGateway, gateway_config

from engine import Engine


@pytest.fixture
def gateway(upstream: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LiveGateway]]:
    """``gateway(**config_overrides)`` -> a running LiveGateway (its ``engine`` attached)."""
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("THRIFTY_TEST_PROVIDER_KEY", PROVIDER_KEY)
    started: list[LiveGateway] = []

    def start(**overrides: Any) -> LiveGateway:
        data_dir = overrides.pop("data_dir", tmp_path / f"data{len(started)}")
        live = LiveGateway(Engine.from_config(gateway_config(Path(data_dir), upstream.url, **overrides)))
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()
