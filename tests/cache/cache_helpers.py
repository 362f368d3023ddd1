"""Helpers shared by the cache tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from router.types import ChatRequest, Message


class StubVerdict(msgspec.Struct, frozen=True):
    accept: bool
    score: float
    reason: str


class CosinePolicy:
    """The policy contract with a plain cosine rule: tests of the cache core, not of the verifier."""

    def __init__(self, threshold: float = 0.9, first_bar: float = 0.5, top_k: int = 4):
        self.threshold, self.first_bar, self.top_k = threshold, first_bar, top_k

    def verify(self, query: str, candidate: str, similarity: float, threshold: float | None = None) -> StubVerdict:
        bar = self.threshold if threshold is None else threshold
        return StubVerdict(similarity >= bar, similarity, "ok" if similarity >= bar else "below-threshold")


def request(text: str, system: str = "You are helpful.", model: str = "auto", **fields: Any) -> ChatRequest:
    return ChatRequest(
        messages=[Message(role="system", content=system), Message(role="user", content=text)], model=model, **fields
    )


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
