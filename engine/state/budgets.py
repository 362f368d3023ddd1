"""Budget counters shared by every replica: :class:`RedisBudgetStore`, a :class:`engine.budgets.BudgetStore`.

Each counter (subject, period, window) is three keys: ``…:s`` the settled spend (``INCRBYFLOAT``),
``…:r`` a hash of in-flight reservations (request id -> USD) and ``…:e`` their expiry times (sorted set).
Reserve is one Lua script: drop expired reservations, read settled + reserved for every counter, and if
no blocking limit is reached reserve the amount under the request id on all of them, so N replicas
overshoot a hard limit by at most the expected cost of the requests in flight. Settle is another: a
``SET NX`` marker per request id makes it idempotent, then the reservation is replaced by the actual cost.
Times come from Redis (``TIME``), never from a replica's clock.

While Redis is down the store runs on this replica's :class:`LocalBudgetStore`, which every settle also
updates, and enforces ``fallback_budget_share`` of each hard limit on this replica's own spend; settles
made meanwhile are queued and sent when Redis answers again (idempotent by request id). A Redis that comes
back empty (restarted without persistence) has lost its counters: each replica then re-seeds them from its
local counters (seeded from its ledger, and updated under the same lock as every send), which already
hold the queued settles, so those are dropped instead of sent twice.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence

from engine.budgets import Counter, LocalBudgetStore
from engine.state._redis import Connection

log = logging.getLogger("thrifty.state")

_KEEP_S = 70 * 86400  # a counter outlives its window (a month) with room to spare
_DONE_S = 2 * 86400  # how long a settled request id is remembered (longer than any request lives)

_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid, amount, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = (#KEYS - 1) / 3
local spent, admit = {}, 1
for i = 1, n do
  local ks, kr, ke = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local old = redis.call('ZRANGEBYSCORE', ke, '-inf', now)
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', ke, '-inf', now)
    redis.call('HDEL', kr, unpack(old))
  end
  local s = tonumber(redis.call('GET', ks) or '0')
  for _, v in ipairs(redis.call('HVALS', kr)) do s = s + tonumber(v) end
  local mine = redis.call('HGET', kr, rid)
  if mine then s = s - tonumber(mine) end
  spent[i] = string.format('%.17g', s)
  local b = ARGV[3 + i]
  if b ~= '' and s >= tonumber(b) then admit = 0 end
end
if admit == 1 and amount > 0 then
  for i = 1, n do
    redis.call('HSET', KEYS[3*i-1], rid, ARGV[2])
    redis.call('ZADD', KEYS[3*i], now + ttl, rid)
    redis.call('PEXPIRE', KEYS[3*i-1], ttl + 60000)
    redis.call('PEXPIRE', KEYS[3*i], ttl + 60000)
  end
end
return {admit, spent, redis.call('EXISTS', KEYS[#KEYS])}
"""

_SETTLE = """
if redis.call('EXISTS', KEYS[#KEYS]) == 0 then return -1 end
local rid, actual = ARGV[1], tonumber(ARGV[2])
local first = redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[3]))
local n = (#KEYS - 2) / 3
for i = 1, n do
  redis.call('HDEL', KEYS[3*i], rid)
  redis.call('ZREM', KEYS[3*i+1], rid)
  if first and actual > 0 then
    redis.call('INCRBYFLOAT', KEYS[3*i-1], ARGV[2])
    redis.call('EXPIRE', KEYS[3*i-1], tonumber(ARGV[4]))
  end
end
if first then return 1 end
return 0
"""

_SPENT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #KEYS / 3 do
  local s = tonumber(redis.call('GET', KEYS[3*i-2]) or '0')
  local live = redis.call('ZRANGEBYSCORE', KEYS[3*i], now, '+inf')
  for _, rid in ipairs(live) do s = s + tonumber(redis.call('HGET', KEYS[3*i-1], rid) or '0') end
  out[i] = string.format('%.17g', s)
end
return out
"""

# A replica adds its own settled spend once per Redis dataset (the marker goes when the data does), so a
# Redis restarted empty is re-seeded by every replica from its local counters.
_SEED = """
if not redis.call('SET', KEYS[1], '1', 'NX') then return 0 end
for i = 2, #KEYS do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[i - 1])
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[#ARGV]))
end
return 1
"""

Settle = tuple[str, tuple[Counter, ...], float]


class RedisBudgetStore:
    """:class:`engine.budgets.BudgetStore` in Redis, with this replica's local store as the fallback."""

    def __init__(self, conn: Connection, local: LocalBudgetStore, *, replica: str, ttl_s: float, share: float,
                 on_fallback: Callable[[str], None] | None = None) -> None:
        self.conn, self.local = conn, local
        self.replica = replica
        self.ttl_ms = int(ttl_s * 1000)
        self.share = share
        self._seeded = False
        self._on_fallback = on_fallback
        r = conn.sync
        self._reserve = r.register_script(_RESERVE)
        self._settle = r.register_script(_SETTLE)
        self._spent = r.register_script(_SPENT)
        self._seed_script = r.register_script(_SEED)
        self._queued: list[Settle] = []
        self._qlock = threading.Lock()
        self._lock = threading.RLock()  # the tracker's thread and the catch-up after an outage
        conn.on_up(self.recover)

    def _keys(self, counters: Sequence[Counter]) -> list[str]:
        out = []
        for subject, period, window in counters:
            base = self.conn.key("budget", subject, period, window)
            out += [base + ":s", base + ":r", base + ":e"]
        return out

    def _ensure_seeded(self) -> bool:
        """Add this replica's ledger spend to the counters once per Redis dataset; True when it did now."""
        if self._seeded:
            return False
        rows = self.local.settled()
        keys = [self.conn.key("budget", "seeded", self.replica)]
        keys += [self.conn.key("budget", s, p, w) + ":s" for s, p, w, _ in rows]
        ok, done = self.conn.call("budget seed", self._seed_script, keys=keys,
                                  args=[repr(r[3]) for r in rows] + [_KEEP_S])
        self._seeded = ok
        if ok and done:  # the local counters hold every queued settle (each is counted there first)
            with self._qlock:
                dropped, self._queued = len(self._queued), []
            log.warning("state: budget counters seeded in Redis from this replica's own counters "
                        "(%d settles queued during an outage are in them)", dropped)
        return bool(ok and done)

    def recover(self) -> None:
        """Redis answers again: re-seed if it lost its data (the local counters then hold the queued settles),
        else send the queued settles."""
        with self._lock:
            self._seeded = False
            if not self._ensure_seeded():
                self.replay()

    # ------------------------------------------------------------------------------------------ store
    def reserve(self, rid: str, counters: Sequence[Counter], blocking: Sequence[float | None],
                amount_usd: float) -> tuple[bool, list[float]]:
        if self.conn.up:
            with self._lock:
                self._ensure_seeded()
                args = [rid, repr(amount_usd), self.ttl_ms] + ["" if b is None else repr(b) for b in blocking]
                marker = self.conn.key("budget", "seeded", self.replica)
                ok, out = self.conn.call("budget reserve", self._reserve, keys=[*self._keys(counters), marker],
                                         args=args)
                if ok and not out[2]:  # Redis lost its data since this replica seeded it
                    self._seeded = False
                    self._ensure_seeded()
            if ok:
                admit, spent, _ = out
                return bool(admit), [float(s) for s in spent]
        # Degraded: this replica's own spend against its share of each hard limit.
        if self._on_fallback is not None:
            self._on_fallback("budgets")
        share = self.share
        admitted, spent = self.local.reserve(rid, counters, [None if b is None else b * share for b in blocking],
                                             amount_usd)
        return admitted, [s / share for s in spent]

    def settle(self, rid: str, counters: Sequence[Counter], actual_usd: float) -> None:
        with self._lock:
            self.local.settle(rid, counters, actual_usd)  # the local counters always hold this replica's spend
            sent = self._send(rid, tuple(counters), actual_usd)
            if sent is None:
                with self._qlock:
                    self._queued.append((rid, tuple(counters), actual_usd))
            elif not sent:  # Redis lost its data: the re-seed from the local counters includes this settle
                self._seeded = False
                self._ensure_seeded()

    def _send(self, rid: str, counters: tuple[Counter, ...], actual_usd: float) -> bool | None:
        """True: applied (or already was); False: not applied, Redis lost this replica's seed; None: failed."""
        keys = [self.conn.key("budget", "settled", rid), *self._keys(counters),
                self.conn.key("budget", "seeded", self.replica)]
        ok, out = self.conn.call("budget settle", self._settle, keys=keys,
                                 args=[rid, repr(actual_usd), _DONE_S, _KEEP_S])
        return (int(out) >= 0) if ok else None

    def replay(self) -> int:
        """Send the settles queued while Redis was down; the number sent."""
        with self._lock, self._qlock:
            queued, self._queued = self._queued, []
        sent = 0
        for i, item in enumerate(queued):
            done = self._send(*item)
            if done is None:
                with self._qlock:
                    self._queued[:0] = queued[i:]
                break
            if not done:  # Redis lost its data meanwhile: the local counters hold these settles
                self._seeded = False
                self._ensure_seeded()
                break
            sent += 1
        if sent:
            log.warning("state: %d budget settles made during the outage sent to Redis", sent)
        return sent

    @property
    def queued(self) -> int:
        return len(self._queued)

    def raise_to(self, counter: Counter, own_usd: float) -> float:
        """This replica's local counter (its own counted spend) up to ``own_usd``, and what that added sent to
        Redis once (queued while it is down), so the shared counter gets every replica's missing part."""
        with self._lock:
            if self.conn.up:
                self._ensure_seeded()  # Redis first holds what the local counters hold (once per dataset)
            added = self.local.raise_to(counter, own_usd)
            if added > 0:
                rid = f"catch-up-{uuid.uuid4().hex}"
                sent = self._send(rid, (counter,), added)
                if sent is None:
                    with self._qlock:
                        self._queued.append((rid, (counter,), added))
                elif not sent:  # Redis lost its data: the re-seed from the local counters includes it
                    self._seeded = False
                    self._ensure_seeded()
            return added

    def spent(self, counters: Sequence[Counter]) -> list[float]:
        if self.conn.up and not self._seeded:
            with self._lock:
                self._ensure_seeded()  # a dataset no request has touched yet: it holds no one's spend
        ok, out = self.conn.call("budget read", self._spent, keys=self._keys(counters), args=[])
        if ok:
            return [float(s) for s in out]
        return [s / self.share for s in self.local.spent(counters)]

    def close(self) -> None:
        self.local.close()
