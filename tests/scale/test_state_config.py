"""``state`` and ``rate_limit`` config: accepted forms, errors that name the key, no Redis without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import load
from engine.errors import ConfigError
from engine.state.ratelimit import LocalRateLimiter, RateLimited, checks_for


def test_state_as_a_url_or_a_mapping_and_the_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THRIFTY_REDIS_URL", raising=False)
    assert load({}).state is None
    s = load({"state": "redis://127.0.0.1:6390/2"}).state
    assert s is not None and s.url == "redis://127.0.0.1:6390/2" and s.timeout_ms == 50
    s = load({"state": {"url": "redis://h:1/0", "fallback_budget_share": 0.5, "prefix": "team"}}).state
    assert s is not None and s.fallback_budget_share == 0.5 and s.prefix == "team"
    monkeypatch.setenv("THRIFTY_REDIS_URL", "redis://other:7/0")
    s = load({"state": {"url": "redis://h:1/0", "prefix": "team"}}).state
    assert s is not None and s.url == "redis://other:7/0" and s.prefix == "team"
    s = load({}).state
    assert s is not None and s.url == "redis://other:7/0"


@pytest.mark.parametrize(("state", "says"), [
    ("http://h:1", "redis://"),
    ({"url": "redis://h:1", "timeout_ms": 0}, "timeout_ms"),
    ({"url": "redis://h:1", "fallback_budget_share": 1.5}, "fallback_budget_share"),
    ({"url": "redis://h:1", "colour": "red"}, "colour"),
    ({"url": "redis://h:1", "prefix": "a b"}, "prefix"),
])
def test_bad_state_config_names_the_key(state: object, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THRIFTY_REDIS_URL", raising=False)
    with pytest.raises(ConfigError, match=says):
        load({"state": state})


def test_rate_limits_per_tenant_and_key_and_their_errors() -> None:
    s = load({"tenants": {"acme": {"rate_limit": {"requests_per_min": 10},
                                   "keys": [{"name": "k1", "key": "sk-1", "rate_limit": {"tokens_per_min": 500}}]}}})
    assert set(s.rate_limits) == {"tenant:acme", "key:k1"}
    with pytest.raises(ConfigError, match="requests_per_min"):
        load({"tenants": {"acme": {"rate_limit": {"requests_per_min": 0}}}})
    with pytest.raises(ConfigError, match="per_hour"):
        load({"tenants": {"acme": {"rate_limit": {"per_hour": 5}}}})


def test_local_gcra_allows_a_minute_burst_then_one_per_interval() -> None:
    from engine.state.config import RateLimitConfig

    now = [1000.0]
    limiter = LocalRateLimiter({"tenant:a": RateLimitConfig(requests_per_min=3)}, clock=lambda: now[0])
    checks = checks_for(limiter.limits, "a", None)
    for _ in range(3):
        limiter.check(checks)
    with pytest.raises(RateLimited) as exc:
        limiter.check(checks)
    assert exc.value.retry_after == 20 and exc.value.status == 429 and exc.value.type == "requests"
    now[0] += 20.0  # one interval later: exactly one more
    limiter.check(checks)
    with pytest.raises(RateLimited):
        limiter.check(checks)
    assert checks_for(limiter.limits, "b", None) == []  # another tenant: no limit, no work


def test_no_state_means_no_redis_import(tmp_path: Path) -> None:
    code = ("import sys; from engine import Engine; "
            "e = Engine.from_config({'cache': {'encoder': 'hashing'}, 'data_dir': sys.argv[1]}); "
            "print('redis' in sys.modules, e.state)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["False", "None"]


def test_the_admin_config_hides_a_redis_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import Engine
    from engine.admin import redacted_config

    monkeypatch.delenv("THRIFTY_REDIS_URL", raising=False)
    for state in ("redis://:s3cret@127.0.0.1:1/0", {"url": "redis://user:s3cret@127.0.0.1:1/0"}):
        engine = Engine.from_config({"data_dir": str(tmp_path / "d"), "cache": {"encoder": "hashing"}, "state": state})
        try:
            text = str(redacted_config(engine))
            assert "s3cret" not in text and "***@127.0.0.1:1/0" in text
        finally:
            engine.close()
