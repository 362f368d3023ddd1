"""Session-wide fixtures shared by every test folder."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def minilm():  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2 (fastest back end that loads), loaded once per test session."""
    from cache import default_encoder

    enc = default_encoder()
    enc.encode(["warm up"])
    return enc


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _fake_upstream() -> Iterator[object]:
    """One loopback fake upstream (OpenAI, Anthropic, Cortex wire formats) for the whole session."""
    from bench.fake_upstream import FakeUpstream

    with FakeUpstream() as server:
        yield server


@pytest.fixture
def upstream(_fake_upstream):  # type: ignore[no-untyped-def]
    """The fake upstream with its scripts and recorded requests cleared."""
    _fake_upstream.reset()
    return _fake_upstream


@pytest.fixture
def serve(minilm):  # type: ignore[no-untyped-def]
    """``serve(config_dict)`` -> (live proxy on 127.0.0.1, its engine); every one stopped at teardown."""
    from live_server import LiveServer

    from engine import Engine

    started: list[LiveServer] = []

    def start(config: dict[str, object]) -> tuple[LiveServer, Engine]:
        live = LiveServer.of(Engine.from_config(config, encoder=minilm))
        started.append(live)
        return live, live.engine  # type: ignore[return-value]

    yield start
    for live in started:
        live.stop()
