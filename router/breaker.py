"""Circuit breakers, one per deployment ("provider/model").

closed --(N consecutive failures, or failure rate over a window)--> open --(cool-down)--> half-open:
exactly one probe goes through; its success closes the circuit, its failure re-opens it. Only
failures that say the deployment is unwell count (connect, timeout, 429, 5xx, malformed); a 400 means
the deployment answered, so it counts as a success.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping

from router.providers.config import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
log = logging.getLogger("thrifty.router")


class CircuitBreaker:
    __slots__ = ("_clock", "_consecutive", "_opened_at", "_probing", "_window", "config", "name", "state")

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic, name: str = "") -> None:
        self.config = config
        self.name = name  # the deployment, for the log lines of state changes
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
            log.warning("circuit %s: half-open after %.1f s, letting one probe through", self.name,
                        self.config.cooldown)
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

    def retry_after(self) -> float:
        """Seconds until this circuit lets a probe through (0 when it would now)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.config.cooldown - (self._clock() - self._opened_at))

    def release(self) -> None:
        """No verdict (the call never reached the deployment): a claimed half-open probe is given back."""
        if self.state == HALF_OPEN:
            self._probing = False

    def record_success(self) -> None:
        self._consecutive = 0
        self._window.append(True)
        if self.state != CLOSED:
            log.warning("circuit %s: closed (%s call succeeded)", self.name, self.state.replace("_", "-"))
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
        log.warning("circuit %s: open for %.1f s (was %s)", self.name, self.config.cooldown,
                    self.state.replace("_", "-"))
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
            breaker = self._breakers[deployment] = CircuitBreaker(config, self._clock, deployment)
        return breaker

    def is_open(self, deployment: str) -> bool:
        breaker = self._breakers.get(deployment)
        return breaker is not None and breaker.is_open

    def retry_after(self, deployments: list[str]) -> float:
        """Seconds until the first of these deployments' circuits lets a probe through."""
        waits = [b.retry_after() for d in deployments if (b := self._breakers.get(d)) is not None]
        return min(waits, default=0.0)

    def states(self) -> dict[str, str]:
        return {d: b.state for d, b in self._breakers.items()}
