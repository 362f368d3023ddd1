"""A live thrifty proxy for tests: uvicorn on a loopback socket, in a thread, with the header limits and read
timeouts of ``thrifty serve`` (``engine.http_limits.GuardedHttpTools``).

One module, imported by name from every test folder (``tests/`` is on ``sys.path`` through its conftest), so
that no folder loads another folder's conftest by path.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from engine import Engine
from engine.server import create_app


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port), started at construction, stopped by ``stop()``."""

    def __init__(self, app: Any, *, engine: Engine | None = None) -> None:
        self.engine = engine
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
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

    @classmethod
    def of(cls, engine: Engine) -> LiveServer:
        """The proxy app of ``engine``, served."""
        return cls(create_app(engine), engine=engine)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A raw socket to the server, for tests that speak HTTP byte by byte."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.settimeout(timeout)
        return s

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
        if self.engine is not None:  # the lifespan's aclose() leaves these to Engine.close(): close them too
            self.engine.ledger.close()
            self.engine.audit.close()
