"""Fixtures for the doors' tests: the engine tests' ``serve`` (live uvicorn servers on 127.0.0.1)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.server import create_app

# The LiveServer of tests/engine/conftest.py, loaded by path: a bare ``import conftest`` would resolve to
# whichever folder's conftest came first.
_spec = importlib.util.spec_from_file_location("_engine_conftest", Path(__file__).parent.parent / "engine" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_engine_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_engine_conftest)
LiveServer = _engine_conftest.LiveServer


@pytest.fixture
def serve(minilm: Any) -> Iterator[Callable[..., tuple[Any, Engine]]]:
    """``serve(config_dict)`` -> (live server, its engine); stopped at teardown."""
    started: list[Any] = []

    def start(config: dict[str, Any]) -> tuple[Any, Engine]:
        engine = Engine.from_config(config, encoder=minilm)
        live = LiveServer(create_app(engine))
        started.append(live)
        return live, engine

    yield start
    for live in started:
        live.stop()
