"""What the attacker's suite imports by name (a bare ``conftest`` import is ambiguous across folders).

The ``gateway(**overrides)`` fixture (conftest.py) starts a proxy of :func:`gateway_config`: two tenants
with virtual keys, the admin API on, the tiny hashing encoder so that hundreds of fuzzed requests stay
cheap. ``LiveGateway`` runs uvicorn with ``engine.http_limits:GuardedHttpTools``, as ``thrifty serve`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from live_server import LiveServer

from engine import Engine
from engine.server import create_app

ADMIN_KEY = "admin-secret-for-tests"
KEYS = {"acme": "sk-acme-virtual-key", "globex": "sk-globex-virtual-key"}
PROVIDER_KEY = "sk-provider-SECRET-0123456789abcdefghijklmnop"


class LiveGateway(LiveServer):
    """The proxy of ``engine``, served as ``thrifty serve`` serves it (see tests/live_server.py)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(create_app(engine), engine=engine)
        self.engine: Engine = engine


def gateway_config(data_dir: Path, upstream_url: str, **overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "data_dir": str(data_dir),
        "providers": [{"name": "fake", "kind": "openai-compatible", "base_url": upstream_url + "/v1",
                       "api_key_env": "THRIFTY_TEST_PROVIDER_KEY",
                       "retries": {"attempts": 1, "backoff_base": 0.01}}],
        "routes": {"fake": ["*"]},
        "dispatch": {"deadline_s": 10},
        "cache": {"encoder": "hashing"},
        "tenants": {name: {"keys": [{"name": f"{name}-key", "key": key}]} for name, key in KEYS.items()},
    }
    for section, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(section), dict):
            cfg[section] = {**cfg[section], **value}
        else:
            cfg[section] = value
    return cfg


def auth(tenant: str = "acme") -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[tenant]}"}


ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def chat_body(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def assert_openai_error(response: Any, status: int | None = None) -> dict[str, Any]:
    """A 4xx in OpenAI's shape: {"error": {"message": str, "type": str, ...}}; the error object."""
    if status is not None:
        assert response.status_code == status, (response.status_code, response.text[:300])
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    err = response.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str)
    return err

