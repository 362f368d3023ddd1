"""The shared-state settings: ``state: redis://…`` (or a mapping) and per-subject rate limits.

Kept apart from the Redis code so that reading a config never imports ``redis``.
"""

from __future__ import annotations

import re

import msgspec

_USERINFO = re.compile(r"^([a-z]+://)[^@/]*@")


def redact_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://***@host:6379/0`` (the admin API and logs)."""
    return _USERINFO.sub(r"\1***@", url)


class StateConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where replicas share budgets, rate limits, circuits and cache writes (Redis or Valkey)."""

    url: str  # redis://host:port/db (rediss:// for TLS); THRIFTY_REDIS_URL overrides it
    prefix: str = "thrifty"  # every key and stream this deployment uses starts with it
    timeout_ms: float = 50.0  # the deadline of every Redis call; past it the call counts as failed
    retry_s: float = 0.5  # while Redis is down, how often it is probed (calls fail fast meanwhile)
    pool_size: int = 32  # connections per client (one sync, one asyncio)
    # While Redis is down each replica enforces this share of every hard budget limit on its own spend.
    fallback_budget_share: float = 0.34
    replicate_cache: bool = True  # cache inserts, deletes and purges travel through a Redis Stream
    stream_maxlen: int = 100_000  # entries the stream keeps (approximately; XADD MAXLEN ~)
    snapshot_every: int = 5_000  # a snapshot of the cache is written to Redis after this many stream entries
    snapshot_max_bytes: int = 256 << 20  # a cache larger than this is not snapshotted (the stream still works)
    shared_circuits: bool = True
    shared_controls: bool = True  # run-time controls (the config overlay) and experiment state reach every replica

    def __post_init__(self) -> None:
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"url must start with redis://, rediss:// or unix://, got {self.url.split('://')[0]!r}")
        if not 1 <= self.timeout_ms <= 10_000:
            raise ValueError(f"timeout_ms must be between 1 and 10000, got {self.timeout_ms}")
        if not 0.01 <= self.retry_s <= 60:
            raise ValueError(f"retry_s must be between 0.01 and 60 seconds, got {self.retry_s}")
        if not 0.0 < self.fallback_budget_share <= 1.0:
            raise ValueError(f"fallback_budget_share must be in (0, 1], got {self.fallback_budget_share}")
        if self.pool_size < 1 or self.stream_maxlen < 100 or self.snapshot_every < 1:
            raise ValueError("pool_size must be >= 1, stream_maxlen >= 100 and snapshot_every >= 1")
        if not self.prefix or any(c in self.prefix for c in " {}*?"):
            raise ValueError(f"prefix must be a non-empty name without spaces, braces or glob characters, got {self.prefix!r}")


class RateLimitConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per tenant or per virtual key; enforced across replicas when ``state`` is set."""

    requests_per_min: int | None = None
    tokens_per_min: int | None = None  # prompt + completion tokens of answered requests

    def __post_init__(self) -> None:
        for name in ("requests_per_min", "tokens_per_min"):
            v = getattr(self, name)
            if v is not None and not 1 <= v <= 10**9:
                raise ValueError(f"{name} must be between 1 and 1000000000, got {v}")
