"""Fixtures for engine and proxy tests: a fake upstream, engines aimed at it, live uvicorn servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from engine import Engine
from engine.server import create_app


class LiveServer:
    """uvicorn serving an app on a loopback socket, in a thread."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        # The header limits and read timeouts of `thrifty serve` (engine.http_limits), from the app's config.
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                                http="engine.http_limits:GuardedHttpTools")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture
def serve(minilm: Any) -> Iterator[Callable[..., tuple[LiveServer, Engine]]]:
    """``serve(config_dict)`` -> (live server, its engine); stopped at teardown."""
    started: list[LiveServer] = []

    def start(config: dict[str, Any]) -> tuple[LiveServer, Engine]:
        engine = Engine.from_config(config, encoder=minilm)
        live = LiveServer(create_app(engine))
        started.append(live)
        return live, engine

    yield start
    for live in started:
        live.stop()
