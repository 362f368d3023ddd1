"""thrifty's public API: the embeddable :class:`Engine` and the OpenAI-shaped request/response types.

    from engine import Engine
    engine = Engine()                      # embedded defaults; Engine.from_config("thrifty.yaml")
    done = await engine.complete({"model": "auto", "messages": [{"role": "user", "content": "Hi"}]})
    done.text, done.meta.cache, done.meta.cost_usd

Names are resolved on first use, so ``import engine`` stays cheap (the CLI starts in milliseconds).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Engine": "engine.engine",
    "EngineStream": "engine.pipeline",
    "Settings": "engine.config",
    "load_config": "engine.config",
    "create_app": "engine.server",
    "ThriftyError": "engine.errors",
    "ConfigError": "engine.errors",
    "RequestError": "engine.errors",
    "AuthError": "engine.errors",
    "BudgetExceeded": "engine.errors",
    "UpstreamError": "engine.errors",
    "UpstreamTimeout": "engine.errors",
    "NoRouteError": "engine.errors",
    "ChatRequest": "engine.types",
    "ChatResponse": "engine.types",
    "ChatChunk": "engine.types",
    "Message": "engine.types",
    "ThriftyOptions": "engine.types",
    "Completion": "engine.types",
    "Meta": "engine.types",
}
_ALIASES = {"load_config": "load"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _ALIASES.get(name, name))
    globals()[name] = value
    return value


__all__ = sorted(_EXPORTS)
