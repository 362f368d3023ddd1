"""A real ``redis-server`` on a free loopback port, and N thrifty replicas on it (tests/scale, bench/redis_scale).

``RedisServer`` runs Debian's ``redis-server`` with no persistence in a temporary directory; ``kill()``
(SIGKILL) and ``start()`` again on the same port simulate an outage. ``Cluster`` starts N proxies (real
uvicorn servers on 127.0.0.1, each with its own data directory) whose config shares that Redis.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from bench.loadgen import free_port


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="thrifty-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: the outage is abrupt, as a crash or a network cut would be."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Replica:
    """One thrifty proxy (an Engine served by uvicorn in a thread) on a free loopback port."""

    def __init__(self, engine: Any) -> None:
        from engine.server import create_app

        self.engine = engine
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(create_app(engine, log_notes=False), log_level="warning", lifespan="on",
                                access_log=False, http="engine.http_limits:GuardedHttpTools")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("replica did not start")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True  # the app's lifespan closes the engine's cache, state and clients
        self.thread.join(timeout=30)
        self.sock.close()
        self.engine.ledger.close()  # what Engine.close() adds to aclose(): the ledger and audit files
        self.engine.audit.close()


class Cluster:
    """``Cluster(configs)``: one replica per config (each its own data_dir, the same ``state``)."""

    def __init__(self, configs: list[dict[str, Any]], encoder: Any = None) -> None:
        from engine import Engine

        self.replicas: list[Replica] = []
        try:
            for cfg in configs:
                self.replicas.append(Replica(Engine.from_config(cfg, encoder=encoder)))
        except BaseException:
            self.stop()
            raise

    def __getitem__(self, i: int) -> Replica:
        return self.replicas[i]

    def __len__(self) -> int:
        return len(self.replicas)

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def stop(self) -> None:
        for r in self.replicas:
            r.stop()
        self.replicas = []

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
