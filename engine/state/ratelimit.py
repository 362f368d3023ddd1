"""Rate limits per tenant and per virtual key: requests and tokens per minute (GCRA).

Each limit is a theoretical arrival time (``tat``): a request moves its subject's request ``tat`` on by
``60 s / requests_per_min`` and is refused when that would put it more than a minute ahead of now, so a
subject may burst its whole minute and then gets one request per interval. Tokens are known only once
the upstream answered: a request is admitted while its subject's token ``tat`` leaves room for one token,
and its prompt + completion tokens are charged when it ends (so, as for budgets, the requests in flight
can overshoot a token limit by their own tokens).

Limits guard upstream capacity and spend: they are checked after the cache (a hit never counts and costs
no Redis round trip) and before the budget and dispatch. :class:`LocalRateLimiter` keeps the state in this
process; :class:`RedisRateLimiter` keeps it in Redis (one Lua script per request, Redis's clock) so every
replica shares it, and falls back to the local one while Redis is down.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.errors import ThriftyError
from engine.state.config import RateLimitConfig

if TYPE_CHECKING:
    from engine.state._redis import Connection

WINDOW_MS = 60_000.0

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local worst, which, news = 0, 0, {}
for i = 1, #KEYS do
  local step, kind = tonumber(ARGV[2*i-1]), ARGV[2*i]
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local wait
  if kind == 'r' then
    news[i] = tat + step
    wait = news[i] - now - 60000
  else
    wait = tat + step - now - 60000
  end
  if wait > worst then worst, which = wait, i end
end
if which == 0 then
  for i = 1, #KEYS do
    if ARGV[2*i] == 'r' then
      redis.call('SET', KEYS[i], string.format('%.17g', news[i]), 'PX', math.ceil(news[i] - now) + 1000)
    end
  end
end
return {which, string.format('%.17g', worst)}
"""

_CHARGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tat = tat + tonumber(ARGV[i])
  redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', math.ceil(tat - now) + 1000)
end
return 1
"""

# (subject, kind "r"/"t", step in ms per request or per token, the limit per minute)
Check = tuple[str, str, float, int]


class RateLimited(ThriftyError):
    """429 as OpenAI sends it: ``type`` says which limit (``requests`` or ``tokens``)."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, subject: str, kind: str, limit: int, wait_ms: float) -> None:
        self.type = "requests" if kind == "r" else "tokens"
        self.retry_after = max(1, math.ceil(wait_ms / 1000.0))  # whole seconds, as Retry-After wants
        unit = "requests per min (RPM)" if kind == "r" else "tokens per min (TPM)"
        super().__init__(f"Rate limit reached for {subject} on {unit}: Limit {limit}. "
                         f"Please try again in {self.retry_after}s.")


def checks_for(limits: dict[str, RateLimitConfig], tenant: str, key_name: str | None) -> list[Check]:
    out: list[Check] = []
    subjects = [f"tenant:{tenant}", f"key:{key_name}"] if key_name else [f"tenant:{tenant}"]
    for subject in subjects:
        cfg = limits.get(subject)
        if cfg is None:
            continue
        if cfg.requests_per_min:
            out.append((subject, "r", WINDOW_MS / cfg.requests_per_min, cfg.requests_per_min))
        if cfg.tokens_per_min:
            out.append((subject, "t", WINDOW_MS / cfg.tokens_per_min, cfg.tokens_per_min))
    return out


class LocalRateLimiter:
    """GCRA in this process (the event loop's thread only: no lock)."""

    def __init__(self, limits: dict[str, RateLimitConfig], clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._tat: dict[tuple[str, str], float] = {}

    def _now(self) -> float:
        return self._clock() * 1000.0

    def check(self, checks: list[Check]) -> None:
        now = self._now()
        news: list[tuple[tuple[str, str], float]] = []
        worst, blocking = 0.0, None
        for subject, kind, step, limit in checks:
            tat = max(self._tat.get((subject, kind), now), now)
            wait = tat + step - now - WINDOW_MS
            if kind == "r":
                news.append(((subject, kind), tat + step))
            if wait > worst:
                worst, blocking = wait, (subject, kind, limit)
        if blocking is not None:
            raise RateLimited(blocking[0], blocking[1], blocking[2], worst)
        for k, tat in news:
            self._tat[k] = tat

    def charge(self, checks: list[Check], tokens: int) -> None:
        now = self._now()
        for subject, kind, step, _ in checks:
            if kind == "t":
                k = (subject, kind)
                self._tat[k] = max(self._tat.get(k, now), now) + step * tokens


class RedisRateLimiter:
    """GCRA in Redis, shared by every replica; the local limiter while Redis is down."""

    def __init__(self, conn: Connection, limits: dict[str, RateLimitConfig],
                 on_fallback: Callable[[str], None] | None = None) -> None:
        self.conn = conn
        self.limits = limits
        self.local = LocalRateLimiter(limits)
        self._on_fallback = on_fallback
        self._scripts: tuple[Any, Any] | None = None

    def _script(self) -> tuple[Any, Any]:
        if self._scripts is None:  # bound to the asyncio client, made inside the serving loop
            aio = self.conn.aio
            self._scripts = (aio.register_script(_ADMIT), aio.register_script(_CHARGE))
        return self._scripts

    def _key(self, subject: str, kind: str) -> str:
        return self.conn.key("rate", subject, kind)

    async def check(self, checks: list[Check]) -> None:
        if self.conn.up:
            admit, _ = self._script()
            keys = [self._key(s, k) for s, k, _, _ in checks]
            args: list[Any] = []
            for _, kind, step, _ in checks:
                args += [repr(step), kind]
            try:
                which, wait = await admit(keys=keys, args=args)
            except self.conn.errors as exc:  # Redis unreachable or slow: run on local state
                self.conn.failed(exc, "rate limit")
            else:
                if int(which):
                    subject, kind, _, limit = checks[int(which) - 1]
                    raise RateLimited(subject, kind, limit, float(wait))
                return
        if self._on_fallback is not None:
            self._on_fallback("rate_limits")
        self.local.check(checks)

    async def charge(self, checks: list[Check], tokens: int) -> None:
        tok = [c for c in checks if c[1] == "t"]
        if not tok or tokens <= 0:
            return
        if self.conn.up:
            _, charge = self._script()
            try:
                await charge(keys=[self._key(s, k) for s, k, _, _ in tok], args=[repr(step * tokens) for _, _, step, _ in tok])
                return
            except self.conn.errors as exc:
                self.conn.failed(exc, "rate limit charge")
        self.local.charge(tok, tokens)


class RateLimits:
    """The pipeline's surface: ``await admit(...)`` before dispatch, ``charge(...)`` when a request ends."""

    def __init__(self, limits: dict[str, RateLimitConfig], shared: RedisRateLimiter | None = None) -> None:
        self.limits = limits
        self._local = LocalRateLimiter(limits) if shared is None else None
        self._shared = shared
        self._tasks: set[Any] = set()

    def checks(self, tenant: str, key_name: str | None) -> list[Check]:
        if not self.limits:
            return []
        return checks_for(self.limits, tenant, key_name)

    async def admit(self, checks: list[Check]) -> None:
        if self._shared is not None:
            await self._shared.check(checks)
        elif self._local is not None:
            self._local.check(checks)

    def charge(self, checks: list[Check], tokens: int) -> None:
        if tokens <= 0 or not any(c[1] == "t" for c in checks):
            return
        if self._local is not None:
            self._local.charge(checks, tokens)
            return
        if self._shared is not None:
            try:
                task = asyncio.get_running_loop().create_task(self._shared.charge(checks, tokens))
            except RuntimeError:  # no loop (a sync caller): this replica's count still holds it
                self._shared.local.charge(checks, tokens)
                return
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
