"""``thrifty serve`` as a real subprocess on a free loopback port (what the budget race and the SIGKILL loop
drive, and the tests of several workers on one data dir): started from a config dict, waited for until /healthz
answers, stopped with SIGINT or killed. Its output goes to a log file, never to an unread pipe."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, cfg: dict[str, Any], tmp_path: Path, *, workers: int = 1, name: str = "thrifty",
                 env: dict[str, str] | None = None) -> None:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--config", str(path), "serve", "--port", str(self.port),
             "--workers", str(workers)], env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def __enter__(self) -> Served:
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"thrifty serve did not start (exit {self.proc.poll()})")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGINT, as an operator stops it: the workers flush their ledgers and exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def kill(self) -> None:
        """SIGKILL to the whole process group (the supervisor and every worker), as a crash."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.log.close()
