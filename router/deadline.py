"""A request's deadline: one monotonic instant every attempt, retry sleep and stream read is capped by."""

from __future__ import annotations

import time


class Deadline:
    """Absolute deadline on the monotonic clock; ``None`` total means no limit (only per-call timeouts)."""

    __slots__ = ("expires_at", "stall", "total", "ttft")

    def __init__(self, total: float | None, *, ttft: float | None = None, stall: float | None = None) -> None:
        self.total = total
        self.expires_at = None if total is None else time.monotonic() + total
        self.ttft = ttft  # time to first content chunk of a stream, per attempt
        self.stall = stall  # longest silence between two stream chunks

    def remaining(self) -> float | None:
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.monotonic() >= self.expires_at

    def cap(self, seconds: float | None) -> float | None:
        """``seconds`` capped by what is left (None = unbounded on both sides)."""
        left = self.remaining()
        if left is None:
            return seconds
        return left if seconds is None else min(seconds, left)

    def __repr__(self) -> str:
        return f"Deadline(total={self.total}, remaining={self.remaining()})"
