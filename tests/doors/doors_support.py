"""What the doors' tests import by name: engine configs aimed at the fake upstream in each wire format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.fake_upstream import FakeUpstream

ANSWER = "Hello from the fake upstream. The answer is 42."
FORMATS = ("openai", "anthropic")

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def config(tmp_path: Path, upstream: FakeUpstream, fmt: str = "openai", **extra: Any) -> dict[str, Any]:
    """An engine whose only provider is the fake upstream speaking ``fmt``, serving every catalog model."""
    provider: dict[str, Any] = (
        {"name": "fake", "kind": "openai-compatible", "base_url": upstream.url + "/v1"} if fmt == "openai"
        else {"name": "fake", "kind": "anthropic", "base_url": upstream.url}
    )
    provider["retries"] = {"attempts": 2, "backoff_base": 0.01}
    cfg: dict[str, Any] = {"data_dir": str(tmp_path / "data"), "providers": [provider],
                           "routes": {"fake": ["*"]}, "dispatch": {"deadline_s": 10}}
    cfg.update(extra)
    return cfg


def upstream_path(fmt: str) -> str:
    return "/v1/chat/completions" if fmt == "openai" else "/v1/messages"
