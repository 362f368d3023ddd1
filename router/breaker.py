"""Circuit breakers, one per deployment ("provider/model").

closed --(N consecutive failures, or failure rate over a window)--> open --(cool-down)--> half-open:
exactly one probe goes through; its success closes the circuit, its failure re-opens it. Only
failures that say the deployment is unwell count (connect, timeout, 429, 5xx, malformed); a 400 means
the deployment answered, so it counts as a success.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

from router.providers.config import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    __slots__ = ("_clock", "_consecutive", "_opened_at", "_probing", "_window", "config", "state")

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self.state = CLOSED
        self._consecutive = 0
        self._window: deque[bool] = deque(maxlen=config.window)
        self._opened_at = 0.0
        self._probing = False

    def allow(self) -> bool:
        """May a call go through now? In half-open, True for exactly one caller until its verdict."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self._clock() - self._opened_at < self.config.cooldown:
                return False
            self.state = HALF_OPEN
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    @property
    def is_open(self) -> bool:
        """Would a call be refused now (without claiming the half-open probe)?"""
        if self.state == OPEN:
            return self._clock() - self._opened_at < self.config.cooldown
        return self.state == HALF_OPEN and self._probing

    def record_success(self) -> None:
        self._consecutive = 0
        self._window.append(True)
        if self.state != CLOSED:
            self.state = CLOSED
            self._probing = False
            self._window.clear()

    def record_failure(self) -> None:
        if self.state == HALF_OPEN:
            self._open()
            return
        self._consecutive += 1
        self._window.append(False)
        c = self.config
        failures = self._window.count(False)
        if self._consecutive >= c.consecutive_failures or (
            len(self._window) >= c.min_calls and failures / len(self._window) >= c.failure_rate
        ):
            self._open()

    def _open(self) -> None:
        self.state = OPEN
        self._opened_at = self._clock()
        self._probing = False
        self._consecutive = 0
        self._window.clear()


class Breakers:
    """Breakers by deployment, created on first use with the deployment's provider settings."""

    def __init__(
        self,
        configs: Mapping[str, BreakerConfig] | None = None,
        default: BreakerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._configs = dict(configs or {})
        self._default = default or BreakerConfig()
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, deployment: str, provider: str) -> CircuitBreaker:
        breaker = self._breakers.get(deployment)
        if breaker is None:
            config = self._configs.get(provider, self._default)
            breaker = self._breakers[deployment] = CircuitBreaker(config, self._clock)
        return breaker

    def is_open(self, deployment: str) -> bool:
        breaker = self._breakers.get(deployment)
        return breaker is not None and breaker.is_open

    def states(self) -> dict[str, str]:
        return {d: b.state for d, b in self._breakers.items()}
