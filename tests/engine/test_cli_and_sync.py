"""The CLI's commands on a real data directory, and the Engine's sync twins."""

from __future__ import annotations

from pathlib import Path

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
