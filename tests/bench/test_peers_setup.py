"""The peers' setup: pinned requirements, LiteLLM config, venv stamps (no network, no install)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import peers


def test_requirements_are_pinned() -> None:
    for spec in peers.PEERS.values():
        lines = [ln.split("#")[0].strip() for ln in spec.requirements.read_text().splitlines()]
        reqs = [ln for ln in lines if ln]
        assert reqs, spec.name
        assert all("==" in r for r in reqs), f"{spec.name}: unpinned requirement in {reqs}"
        assert not any(r.lower().startswith("torch") for r in reqs), "torch goes in `first`, alone"
    assert peers.PEERS["gptcache"].first == ("torch==2.13.0",)


def test_litellm_config_points_every_model_at_the_upstream() -> None:
    cfg = peers.litellm_config("http://127.0.0.1:9000/v1", ["bench-model", "gpt-4o-mini"])
    assert [m["model_name"] for m in cfg["model_list"]] == ["bench-model", "gpt-4o-mini"]
    for m in cfg["model_list"]:
        assert m["litellm_params"]["api_base"] == "http://127.0.0.1:9000/v1"
        assert m["litellm_params"]["model"].startswith("openai/")


def test_unknown_peer_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(peers.PeerSetupError, match="unknown peer 'nope'"):
        peers.ensure("nope", tmp_path)


def test_an_installed_peer_with_current_stamp_is_reused(tmp_path: Path) -> None:
    spec = peers.PEERS["litellm"]
    py = peers.venv_python("litellm", tmp_path)
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/sh\n")
    (tmp_path / "litellm" / ".thrifty-installed").write_text(peers._digest(spec) + "\n")
    assert peers.ensure("litellm", tmp_path, python="/nonexistent/python") == py  # no venv, no pip run


def test_a_changed_pin_reinstalls(tmp_path: Path) -> None:
    py = peers.venv_python("litellm", tmp_path)
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/sh\nexit 3\n")
    py.chmod(0o755)
    (tmp_path / "litellm" / ".thrifty-installed").write_text("stale\n")
    with pytest.raises(peers.PeerSetupError, match="exit code 3"):
        peers.ensure("litellm", tmp_path)
