"""Fixtures for the cache tests: a cache factory over a temporary directory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cache_helpers import CosinePolicy

from cache import CacheConfig, HashingEncoder, SemanticCache


@pytest.fixture
def encoder() -> HashingEncoder:
    return HashingEncoder(64)


@pytest.fixture
def open_cache(tmp_path: Path) -> Iterator[Callable[..., SemanticCache]]:
    opened: list[SemanticCache] = []

    def make(path: Path | None = None, dim: int = 64, name: str = "hashing-64", **config: Any) -> SemanticCache:
        config.setdefault("durable", False)
        policy = config.pop("policy", None) or CosinePolicy()
        c = SemanticCache.open(path or tmp_path / f"c{len(opened)}", name, dim, CacheConfig(**config), policy=policy)
        opened.append(c)
        return c

    yield make
    for c in opened:
        with contextlib.suppress(Exception):
            c.close()
