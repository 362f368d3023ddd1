"""Circuit breakers, one per deployment ("provider/model").

closed --(N consecutive failures, or failure rate over a window)--> open --(cool-down)--> half-open:
exactly one probe goes through; its success closes the circuit, its failure re-opens it. Only
failures that say the deployment is unwell count (connect, timeout, 429, 5xx, malformed); a 400 means
the deployment answered, so it counts as a success.

With shared state (``engine/state/circuits.py``) a breaker tells ``shared`` when it opens or closes, other
replicas' changes arrive through :meth:`Breakers.apply_remote`, and the half-open probe is claimed across
replicas (``shared.claim_probe``): a replica that loses the claim keeps refusing, asking again at most
once a second, until the prober's verdict arrives. Without it (``shared`` None) nothing here changes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from router.providers.config import BreakerConfig

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
log = logging.getLogger("thrifty.router")


class CircuitBreaker:
    __slots__ = ("_clock", "_consecutive", "_opened_at", "_probing", "_remote_until", "_window", "config", "name",
                 "shared", "state")

    def __init__(self, config: BreakerConfig, clock: Callable[[], float] = time.monotonic, name: str = "") -> None:
        self.config = config
        self.name = name  # the deployment, for the log lines of state changes
        self._clock = clock
        self.state = CLOSED
        self._consecutive = 0
        self._window: deque[bool] = deque(maxlen=config.window)
        self._opened_at = 0.0
        self._probing = False
        self._remote_until = 0.0  # another replica holds the half-open probe until about then
        self.shared: Any = None  # engine.state.circuits.SharedCircuits when replicas share circuit state

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
        if self.shared is not None:
            now = self._clock()
            if now < self._remote_until or not self.shared.claim_probe(self.name):
                self._remote_until = max(self._remote_until, now + min(1.0, self.config.cooldown))
                return False
        self._probing = True
        return True

    @property
    def is_open(self) -> bool:
        """Would a call be refused now (without claiming the half-open probe)?"""
        if self.state == OPEN:
            return self._clock() - self._opened_at < self.config.cooldown
        return self.state == HALF_OPEN and (self._probing or self._clock() < self._remote_until)

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
            self._close()
            if self.shared is not None:
                self.shared.closed(self.name)

    def _close(self) -> None:
        self.state = CLOSED
        self._probing = False
        self._remote_until = 0.0
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
        self._set_open(0.0)
        if self.shared is not None:
            self.shared.opened(self.name, self.config.cooldown)

    def _set_open(self, age_s: float) -> None:
        self.state = OPEN
        self._opened_at = self._clock() - age_s
        self._probing = False
        self._remote_until = 0.0
        self._consecutive = 0
        self._window.clear()

    def apply_remote(self, state: str, age_s: float) -> None:
        """Another replica opened (``age_s`` ago) or closed this deployment's circuit: follow it, tell nobody."""
        if state == OPEN:
            if age_s < self.config.cooldown:
                log.warning("circuit %s: open for %.1f s (another replica saw it failing)", self.name,
                            self.config.cooldown - age_s)
                self._set_open(age_s)
        elif state == CLOSED and self.state != CLOSED:
            log.warning("circuit %s: closed (another replica's probe succeeded)", self.name)
            self._close()


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
        self._shared: Any = None

    @property
    def shared(self) -> Any:
        return self._shared

    @shared.setter
    def shared(self, shared: Any) -> None:
        """Share circuit state across replicas (engine/state/circuits.py); every breaker, old and new."""
        self._shared = shared
        for breaker in self._breakers.values():
            breaker.shared = shared

    def get(self, deployment: str, provider: str) -> CircuitBreaker:
        breaker = self._breakers.get(deployment)
        if breaker is None:
            config = self._configs.get(provider, self._default)
            breaker = self._breakers[deployment] = CircuitBreaker(config, self._clock, deployment)
            breaker.shared = self._shared
        return breaker

    def apply_remote(self, deployment: str, state: str, age_s: float) -> None:
        """A change another replica published (its deployment is ``provider/model``)."""
        self.get(deployment, deployment.split("/", 1)[0]).apply_remote(state, age_s)

    def is_open(self, deployment: str) -> bool:
        breaker = self._breakers.get(deployment)
        return breaker is not None and breaker.is_open

    def retry_after(self, deployments: list[str]) -> float:
        """Seconds until the first of these deployments' circuits lets a probe through."""
        waits = [b.retry_after() for d in deployments if (b := self._breakers.get(d)) is not None]
        return min(waits, default=0.0)

    def states(self) -> dict[str, str]:
        return {d: b.state for d, b in self._breakers.items()}
