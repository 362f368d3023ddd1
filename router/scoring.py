"""Scoring: predicted quality and expected cost, ordered under a policy.

* ``quality``  — best predicted quality first (cheaper first among equals).
* ``cost``     — cheapest expected cost first (better first among equals).
* ``balanced`` — maximise ``quality - balance * log10(cost / cheapest cost)``: each tenfold increase in
  price must buy ``balance`` of quality (default 0.1). Log cost, because prices span four decades.
* ``target``   — the cheapest model whose predicted quality reaches the target, then the next cheapest
  that does; models below the target follow, best first, as fallbacks.

Everything is a vector operation over the surviving models; expected cost is
``input price × prompt tokens + output price × expected output tokens for the task``.
"""

from __future__ import annotations

import numpy as np

from models.schema import TASKS

POLICIES = ("quality", "balanced", "cost", "target")

# Expected completion tokens per task, when the catalog entry does not say (reasoning models do).
DEFAULT_OUTPUT_TOKENS: dict[str, int] = {
    "code": 500,
    "math": 400,
    "reasoning": 400,
    "summarization": 250,
    "extraction": 150,
    "translation": 250,
    "creative": 600,
    "chat": 300,
    "classification": 10,
}
assert set(DEFAULT_OUTPUT_TOKENS) == set(TASKS)

_COST_FLOOR = 1e-9  # local models cost nothing; the log needs a floor


def expected_cost(prompt_tokens: int, output_tokens: np.ndarray, price_in: np.ndarray, price_out: np.ndarray) -> np.ndarray:
    """USD for each deployment (prices per 1M tokens)."""
    return (prompt_tokens * price_in + output_tokens * price_out) * 1e-6


def order(
    policy: str,
    quality: np.ndarray,
    cost: np.ndarray,
    *,
    target: float = 0.8,
    balance: float = 0.1,
) -> np.ndarray:
    """Indices into ``quality``/``cost`` (same length), best first under ``policy``."""
    if policy == "quality":
        return np.lexsort((cost, -quality))
    if policy == "cost":
        return np.lexsort((-quality, cost))
    if policy == "balanced":
        c = np.maximum(cost, _COST_FLOOR)
        score = quality - balance * np.log10(c / c.min())
        return np.lexsort((cost, -score))
    if policy == "target":
        meets = quality >= target
        return np.lexsort((np.where(meets, cost, -quality), ~meets))
    raise ValueError(f"unknown policy {policy!r}; policies are {', '.join(POLICIES)}")


def balanced_score(quality: np.ndarray, cost: np.ndarray, balance: float = 0.1) -> np.ndarray:
    c = np.maximum(cost, _COST_FLOOR)
    return quality - balance * np.log10(c / c.min())
