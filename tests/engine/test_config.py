"""Two-phase config: strict decoding (typos name file and key), then resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import load
from engine.errors import ConfigError


def test_embedded_defaults_run_simulated(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("THRIFTY_CONFIG", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "TOGETHER_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    s = load(None)
    assert s.simulated
    assert [p.kind for p in s.providers] == ["simulated"]
    assert any("SIMULATED" in n for n in s.notes)


def test_env_keys_enable_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THRIFTY_CONFIG", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    s = load(None)
    assert not s.simulated
    assert "openai" in [p.name for p in s.providers]


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    f = tmp_path / "thrifty.yaml"
    f.write_text("cache:\n  treshold: 0.9\n")
    with pytest.raises(ConfigError) as info:
        load(f)
    msg = str(info.value)
    assert str(f) in msg and "treshold" in msg and "cache" in msg


def test_unknown_nested_provider_key(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("providers:\n  - name: x\n    kind: openai\n    base_ur1: http://127.0.0.1:1\n")
    with pytest.raises(ConfigError, match="base_ur1"):
        load(f)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("cache: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(f)
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.yaml")


def test_tenants_keys_and_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_KEY", "sk-acme-env")
    s = load({
        "tenants": {
            "acme": {"keys": [{"name": "a1", "key": "sk-a1"}, {"name": "a2", "key_env": "ACME_KEY",
                                                              "budget": {"daily_usd": {"hard": 1}}}],
                     "budget": {"monthly_usd": {"soft": 5, "hard": 10}, "on_hard": "downgrade"}},
        }
    })
    assert s.keys["sk-a1"].tenant == "acme"
    assert s.keys["sk-acme-env"].name == "a2"
    assert set(s.budgets) == {"tenant:acme", "key:a2"}


def test_key_env_unset_is_an_error() -> None:
    with pytest.raises(ConfigError, match="key_env"):
        load({"tenants": {"t": {"keys": [{"name": "k", "key_env": "THRIFTY_TEST_UNSET_VAR"}]}}})


def test_cache_policy_preset_and_threshold_reach_the_cache(tmp_path: Path) -> None:
    from engine import Engine

    cfg = {"data_dir": str(tmp_path / "d"), "cache": {"encoder": "hashing", "policy": "recall", "threshold": 0.7}}
    engine = Engine.from_config(cfg)
    try:
        policy = engine.cache.policy
        assert policy.threshold == pytest.approx(0.7)
        assert policy.config.substitutions  # the "recall" preset's guard, not the default's
    finally:
        engine.close()
    from cache.policy import PRESETS

    engine = Engine.from_config({"data_dir": str(tmp_path / "e"), "cache": {"encoder": "hashing"}})
    try:  # the default: guards, then the learned verifier (issue 14)
        assert engine.cache.policy.config == PRESETS["verified"] and engine.cache.policy.config.learned
        assert not engine.cache.policy.config.substitutions
    finally:
        engine.close()
    engine = Engine.from_config({"data_dir": str(tmp_path / "f"), "cache": {"encoder": "hashing", "policy": "balanced"}})
    try:  # an older preset name still loads what it always meant
        assert engine.cache.policy.threshold == pytest.approx(0.96) and not engine.cache.policy.config.learned
    finally:
        engine.close()
    with pytest.raises(ConfigError, match="policy"):
        load({"cache": {"policy": "loose"}})
    with pytest.raises(ConfigError, match=r"threshold must be between 0 and 1.*\$\.cache"):
        load({"cache": {"threshold": 5}})
