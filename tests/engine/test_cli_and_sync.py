"""The CLI's commands on a real data directory, and the Engine's sync twins."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import yaml
from engine_support import ANSWER, base_config

from bench.fake_upstream import FakeUpstream
from engine import Engine
from engine.cli import main


def test_sync_twins_complete_and_stream(upstream: FakeUpstream, tmp_path: Path, minilm) -> None:
    engine = Engine.from_config(base_config(tmp_path, upstream), encoder=minilm)
    try:
        req = {"messages": [{"role": "user", "content": "Give me a synonym for quick."}]}
        done = engine.complete_sync(req)
        assert done.text == ANSWER and done.meta.cache == "miss" and done.meta.cost_usd > 0
        chunks = list(engine.stream_sync({"messages": [{"role": "user", "content": "Another one, please."}]}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == ANSWER
        again = list(engine.stream_sync(req))  # a hit replayed as a stream
        assert "".join(c.choices[0].delta.content or "" for c in again if c.choices) == ANSWER
    finally:
        engine.close()


def test_cli_models_route_usage_and_cache(upstream: FakeUpstream, tmp_path: Path, minilm,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    cfg = base_config(tmp_path, upstream)
    path = tmp_path / "thrifty.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = Engine.from_config(path, encoder=minilm)
    for q in ("first question?", "second question?"):
        engine.complete_sync({"messages": [{"role": "user", "content": q}]})
    engine.close()

    assert main(["--config", str(path), "models", "--capability", "vision"]) == 0
    out = capsys.readouterr().out
    assert "gpt-4o" in out
    assert main(["--config", str(path), "usage", "--by", "model"]) == 0
    out = capsys.readouterr().out
    assert "requests 2" in out
    assert main(["--config", str(path), "cache", "stats"]) == 0
    assert '"entries": 2' in capsys.readouterr().out
    export = tmp_path / "export.jsonl"
    assert main(["--config", str(path), "cache", "export", str(export)]) == 0
    assert "exported 2" in capsys.readouterr().out
    assert main(["--config", str(path), "cache", "purge", "default"]) == 0
    assert "purged 2" in capsys.readouterr().out
    assert main(["--config", str(path), "cache", "import", str(export)]) == 0
    assert "imported 2" in capsys.readouterr().out
    assert main(["--config", str(path), "route", "Write a Python function that merges two sorted lists"]) == 0
    out = capsys.readouterr().out
    assert "code" in out


def test_cli_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cache:\n  enabeld: true\n")
    assert main(["--config", str(bad), "models"]) == 1
    err = capsys.readouterr().err
    assert "enabeld" in err and str(bad) in err


@pytest.mark.anyio
async def test_engine_stream_as_the_readme_shows(upstream: FakeUpstream, tmp_path: Path, minilm) -> None:
    engine = Engine.from_config(base_config(tmp_path, upstream), encoder=minilm)
    try:
        req = {"messages": [{"role": "user", "content": "Stream me an answer."}]}
        for outcome in ("miss", "exact"):  # no start() call: iteration starts the stream
            stream = engine.stream(req)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == ANSWER
            assert stream.meta.cache == outcome and stream.meta.latency_ms > 0  # meta final after iteration
            if outcome == "miss":
                assert stream.meta.cost_usd > 0 and stream.meta.model
            await engine.flush()
    finally:
        await engine.aclose()
        engine.ledger.close()


def _write_config(tmp_path: Path, upstream: FakeUpstream) -> Path:
    path = tmp_path / "thrifty.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path, upstream)))
    return path


def test_config_is_accepted_after_the_subcommand(upstream: FakeUpstream, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_config(tmp_path, upstream)
    bad = tmp_path / "bad.yaml"
    bad.write_text("cache:\n  enabeld: true\n")
    assert main(["models", "--config", str(bad)]) == 1  # the file after the subcommand is the one read
    assert str(bad) in capsys.readouterr().err
    assert main(["--config", str(bad), "models", "--config", str(path)]) == 0  # the later one wins
    assert main(["--config", str(bad), "models"]) == 1  # before the subcommand still works


def test_route_unknown_model_is_a_clear_error(upstream: FakeUpstream, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_config(tmp_path, upstream)
    assert main(["route", "--config", str(path), "--model", "gpt-7", "hello"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'gpt-7'" in err and "Traceback" not in err


def test_cache_stats_counts_and_purge_asks(upstream: FakeUpstream, tmp_path: Path, minilm,
                                          capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_config(tmp_path, upstream)
    engine = Engine.from_config(path, encoder=minilm)
    for q in ("first question?", "first question?", "first question?", "second question?"):
        engine.complete_sync({"messages": [{"role": "user", "content": q}]})
    engine.close()
    assert main(["cache", "stats", "--config", str(path)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 2 and stats["requests"]["exact"] == 2 and stats["requests"]["miss"] == 2
    assert stats["hit_rate"] == 0.5 and stats["saved_usd"] > 0

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: refuse, name the way out
    assert main(["cache", "purge", "--config", str(path)]) == 2
    assert "--yes" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", _Tty("no\n"))
    assert main(["cache", "purge", "--config", str(path)]) == 2
    assert "nothing purged" in capsys.readouterr().err
    assert main(["cache", "stats", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 2
    monkeypatch.setattr("sys.stdin", _Tty("yes\n"))
    assert main(["cache", "purge", "--config", str(path)]) == 0
    assert "purged 2 entries" in capsys.readouterr().out
    assert main(["cache", "stats", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 0


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_serving_on_is_printed_once_serving(tmp_path: Path) -> None:
    cfg = tmp_path / "thrifty.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "cache": {"encoder": "hashing"}}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "engine.cli", "serve", "--config", str(cfg), "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(180, first.kill)  # a server that hangs before serving fails the test, not CI
    watchdog.start()
    try:
        assert first.stderr is not None
        seen: list[str] = []
        for line in first.stderr:
            seen.append(line)
            if "serving on" in line:
                break
        else:
            pytest.fail("the server exited without saying it was serving")
        assert f"http://127.0.0.1:{port}/v1" in line
        assert sum("SIMULATED provider" in x for x in seen) == 1  # the config's notes, said once
        # Said only once serving: the port answers at the moment the line is read.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["status"] == "ok"
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)  # port taken
        assert second.returncode != 0 and "serving on" not in second.stderr
    finally:
        watchdog.cancel()
        first.send_signal(signal.SIGINT)
        first.wait(timeout=30)


def test_route_is_readable_at_80_columns(upstream: FakeUpstream, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    path = _write_config(tmp_path, upstream)
    assert main(["route", "--config", str(path), "--max-cost", "0.0003", "Write a Python function"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "fake/" in out and "…" not in out  # deployments whole, never cut
    assert "expected cost" in out  # the dropped models and why


def test_models_unknown_provider_names_the_known_ones(upstream: FakeUpstream, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_config(tmp_path, upstream)
    assert main(["models", "--config", str(path), "--provider", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "'nosuch'" in err and "fake" in err and "openai" in err
