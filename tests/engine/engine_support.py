"""What engine tests import by name (a module of its own: a bare ``conftest`` import would resolve to
whichever test folder's conftest was imported first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.fake_upstream import FakeUpstream

ANSWER = "Hello from the fake upstream. The answer is 42."


def base_config(tmp_path: Path, upstream: FakeUpstream, **extra: Any) -> dict[str, Any]:
    """An engine config whose only provider is the fake upstream, serving every catalog model."""
    cfg: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "providers": [{"name": "fake", "kind": "openai-compatible", "base_url": upstream.url + "/v1",
                       "retries": {"attempts": 2, "backoff_base": 0.01}}],
        "routes": {"fake": ["*"]},
        "dispatch": {"deadline_s": 10},
    }
    cfg.update(extra)
    return cfg
