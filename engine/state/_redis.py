"""The Redis connection every shared-state part uses, and its health.

One sync client (for the threads: budgets, replication, circuits) and one asyncio client (for the event
loop: rate limits), each with its own pool and the same deadline on every call. A failed call marks the
connection down; while it is down calls are not attempted (each part runs on its local state) and one
thread probes Redis every ``retry_s``; when a probe answers, the connection is up again and every
``on_up`` callback runs (budget settles and cache writes queued during the outage are sent then).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from engine.state.config import StateConfig

log = logging.getLogger("thrifty.state")

ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)
# One retry, on a fresh connection, only when a pooled connection turns out dead (Redis restarted since it
# was opened); a timeout is never retried: the deadline is the deadline.
_STALE: tuple[type[redis.RedisError], ...] = (redis.ConnectionError,)


class Connection:
    errors = ERRORS  # what a failed call raises (for callers that do not import redis)

    def __init__(self, config: StateConfig, *, on_change: Callable[[bool], None] | None = None) -> None:
        self.config = config
        self.prefix = config.prefix
        timeout = config.timeout_ms / 1000.0
        self.sync = redis.Redis.from_url(config.url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                         max_connections=config.pool_size, health_check_interval=0,
                                         retry=Retry(NoBackoff(), 1, supported_errors=_STALE))
        self._aio: aioredis.Redis | None = None
        self._timeout = timeout
        self._up = True
        self._down_since = 0.0
        self._outages = 0
        self._lock = threading.Lock()
        self._on_up: list[Callable[[], object]] = []
        self._on_change = on_change
        self._stop = threading.Event()
        self._prober: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ keys
    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # ------------------------------------------------------------------------------------------ clients
    @property
    def aio(self) -> aioredis.Redis:
        """The asyncio client; made on first use, inside the event loop that uses it."""
        if self._aio is None:
            self._aio = aioredis.Redis.from_url(
                self.config.url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
                max_connections=self.config.pool_size, health_check_interval=0,
                retry=AsyncRetry(NoBackoff(), 1, supported_errors=_STALE))
        return self._aio

    # ------------------------------------------------------------------------------------------ health
    @property
    def up(self) -> bool:
        return self._up

    @property
    def outages(self) -> int:
        return self._outages

    def on_up(self, fn: Callable[[], object]) -> None:
        self._on_up.append(fn)

    def failed(self, exc: BaseException, what: str) -> None:
        """A call failed: Redis counts as down until a probe answers."""
        with self._lock:
            if not self._up:
                return
            self._up = False
            self._down_since = time.monotonic()
            self._outages += 1
        log.warning("state: Redis unreachable (%s during %s); running on local state until it answers",
                    type(exc).__name__, what)
        self.start()  # the prober (already running when the engine was started)
        if self._on_change is not None:
            self._on_change(False)

    def start(self) -> None:
        if self._prober is None:
            self._prober = threading.Thread(target=self._probe_loop, name="thrifty-state-probe", daemon=True)
            self._prober.start()

    def _probe_loop(self) -> None:
        while not self._stop.wait(self.config.retry_s):
            if self._up:
                continue
            try:
                self.sync.ping()
            except ERRORS:
                continue
            with self._lock:
                self._up = True
                down_s = time.monotonic() - self._down_since
            log.warning("state: Redis answers again after %.1f s; catching up", down_s)
            if self._on_change is not None:
                self._on_change(True)
            for fn in self._on_up:
                try:
                    fn()
                except Exception as exc:  # a catch-up step that failed retries at the next outage's end
                    log.warning("state: catch-up step failed: %s", exc)

    def close(self) -> None:
        self._stop.set()
        if self._prober is not None:
            self._prober.join(timeout=5)
            self._prober = None
        self.sync.close()

    async def aclose(self) -> None:
        if self._aio is not None:
            await self._aio.aclose()
            self._aio = None

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """``(True, result)``, or ``(False, None)`` when Redis is down or the call failed (marks it down)."""
        if not self._up:
            return False, None
        try:
            return True, fn(*args, **kwargs)
        except ERRORS as exc:
            self.failed(exc, what)
            return False, None
