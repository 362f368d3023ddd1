"""Servers the benchmarks start as subprocesses (fake upstream, ``thrifty serve``, peers), each waited on
until it answers its health check and always stopped, with its output kept in a log file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import yaml

from bench.loadgen import free_port

ROOT = Path(__file__).resolve().parent.parent


class ServerStartError(Exception):
    """A benchmark server did not come up; the message carries the tail of its log."""


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


class Server:
    """``with Server(cmd, port, log) as s:`` — started, healthy, then stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, cmd: Sequence[str], port: int, log: Path, *, health: str = "/healthz",
                 env: dict[str, str] | None = None, timeout_s: float = 120.0, cwd: Path = ROOT,
                 ready: frozenset[int] = frozenset({200})) -> None:
        self.name, self.cmd, self.port, self.log = name, list(cmd), port, Path(log)
        self.ready = ready  # statuses of the health URL that mean "serving"
        self.health, self.env, self.timeout_s, self.cwd = health, env, timeout_s, cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.cwd,
                                         env=_env(self.env), start_new_session=True)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.base_url + self.health, timeout=2) as r:
                    if r.status in self.ready:
                        return self
            except urllib.error.HTTPError as exc:
                if exc.code in self.ready:
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise ServerStartError(f"{self.name} not healthy after {self.timeout_s:.0f}s:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The server runs in its own session: its group holds only what it spawned (uvicorn workers).
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def fake_upstream(log_dir: Path, port: int | None = None) -> Server:
    port = port or free_port()
    return Server("fake upstream", [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)], port,
                  log_dir / "fake_upstream.log", health="/v1/chat/completions",
                  ready=frozenset({200, 404, 405}))  # it has no health route: any HTTP answer will do


BENCH_MODEL = "bench-model"


def thrifty_config(upstream_port: int, data_dir: Path, *, cache: bool = True,
                   encoder: str = "default") -> dict[str, object]:
    """thrifty's bench config: one OpenAI-compatible provider at the fake upstream and one catalog model."""
    return {
        "data_dir": str(data_dir),
        "providers": [{"name": "fake", "kind": "openai-compatible",
                       "base_url": f"http://127.0.0.1:{upstream_port}/v1"}],
        "catalog": {"models": [{
            "id": BENCH_MODEL, "vendor": "openai", "price": {"input": 0.15, "output": 0.6},
            "context_window": 128000, "max_output": 16384,
            "capabilities": {"tools": True, "json_mode": True, "streaming": True},
            "routes": [{"provider": "fake", "model": BENCH_MODEL}],
        }]},
        "cache": {"enabled": cache, "encoder": encoder},
    }


def thrifty_serve(config: dict[str, object], work: Path, port: int | None = None,
                  env: dict[str, str] | None = None, *, module: str = "engine.cli") -> Server:
    """``thrifty serve`` as a subprocess. ``module`` may name a wrapper with the same CLI (bench._inject)."""
    port = port or free_port()
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "thrifty.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", module, "--config", str(cfg), "serve", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    return Server("thrifty serve", cmd, port, work / "thrifty.log", env=env, timeout_s=180)
