"""Retry timing: full-jitter exponential backoff, and Retry-After honoured within limits."""

from __future__ import annotations

import random

from router.errors import ProviderError
from router.providers.config import RetryPolicy


def backoff(retry: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Delay before retry number ``retry`` (0-based): uniform in [0, min(max, base * 2**retry)]."""
    return rng.uniform(0.0, min(policy.backoff_max, policy.backoff_base * (2**retry)))


def retry_delay(error: ProviderError, retry: int, policy: RetryPolicy, rng: random.Random,
                remaining: float | None) -> float | None:
    """Seconds to wait before retrying the same deployment, or None to move on to the next candidate.

    A Retry-After longer than the policy allows, or than the deadline leaves, means this deployment
    cannot answer in time: falling back is better than sleeping into the deadline.
    """
    if error.retry_after is not None:
        if error.retry_after > policy.max_retry_after:
            return None
        delay = error.retry_after
    else:
        delay = backoff(retry, policy, rng)
    if remaining is not None and delay >= remaining:
        return None
    return delay
