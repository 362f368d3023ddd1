"""Budgets per tenant and per virtual key: daily and monthly USD, soft (warn) and hard (reject/downgrade).

A request that a budget applies to **reserves** its expected cost before dispatch and **settles** its
actual cost when it ends (success, error, stream end, client disconnect). The check and the reservation
are one atomic step in a :class:`BudgetStore` shared by every worker and process on one data directory,
so concurrent requests see each other's in-flight spend: a hard limit is overshot by at most the
expected cost of the requests in flight when it was reached (and by what an answer costs beyond its
estimate). A request with no budget does no work here at all.

:class:`LocalBudgetStore` keeps the counters in SQLite (``budgets.sqlite3`` in the data directory) and
runs each step in a ``BEGIN IMMEDIATE`` transaction; with ``state: redis://…`` replicas share
:class:`engine.state.budgets.RedisBudgetStore` instead (this store stays its fallback). Store calls run on one
thread per tracker, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Protocol

import msgspec

log = logging.getLogger("thrifty.budgets")

Action = Literal["ok", "warn", "downgrade", "reject"]
_RANK = {"ok": 0, "warn": 1, "downgrade": 2, "reject": 3}


class Limit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    soft: float | None = None  # USD: crossing it warns (log, metric, admin API)
    hard: float | None = None  # USD: reaching it rejects or downgrades


class BudgetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    daily_usd: Limit | None = None
    monthly_usd: Limit | None = None
    on_hard: Literal["reject", "downgrade"] = "reject"


class BudgetState(msgspec.Struct):
    subject: str  # "tenant:acme" or "key:team-a"
    period: str  # "daily" | "monthly"
    window: str  # the day or month it covers
    spend_usd: float  # settled spend plus what requests in flight have reserved
    soft_usd: float | None
    hard_usd: float | None
    status: Action


class Verdict(msgspec.Struct, frozen=True):
    action: Action
    message: str = ""


Counter = tuple[str, str, str]  # (subject, period, window)


class Reservation(msgspec.Struct, frozen=True):
    id: str
    counters: tuple[Counter, ...]
    amount_usd: float


class BudgetStore(Protocol):
    """Atomic spend counters shared by every process that enforces one set of budgets."""

    def reserve(self, rid: str, counters: Sequence[Counter], blocking: Sequence[float | None],
                amount_usd: float) -> tuple[bool, list[float]]:
        """Each counter's spend (settled + reserved) before this request; reserve ``amount_usd`` on all of
        them unless some counter's spend has reached its ``blocking`` limit (then reserve nothing)."""

    def settle(self, rid: str, counters: Sequence[Counter], actual_usd: float) -> None:
        """Drop the reservation ``rid`` and add the actual cost to its counters."""

    def spent(self, counters: Sequence[Counter]) -> list[float]:
        """Settled + reserved spend of each counter."""

    def raise_to(self, counter: Counter, own_usd: float) -> float:
        """Bring this process's part of ``counter`` up to ``own_usd`` (what its own ledger says it spent),
        atomically and idempotently; the amount added (0 when it already counted that much)."""

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    subject TEXT NOT NULL, period TEXT NOT NULL, window TEXT NOT NULL, usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (subject, period, window)
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT NOT NULL, subject TEXT NOT NULL, period TEXT NOT NULL, window TEXT NOT NULL,
    usd REAL NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (id, subject, period, window)
);
CREATE INDEX IF NOT EXISTS reservations_counter ON reservations (subject, period, window);
CREATE INDEX IF NOT EXISTS reservations_expires ON reservations (expires);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
"""
_SPENT = ("SELECT COALESCE((SELECT usd FROM spend WHERE subject=?1 AND period=?2 AND window=?3), 0) + "
          "COALESCE((SELECT SUM(usd) FROM reservations WHERE subject=?1 AND period=?2 AND window=?3), 0)")


def _pid_alive(owner: str) -> bool:
    try:
        os.kill(int(owner.split("-", 1)[0]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


class LocalBudgetStore:
    """:class:`BudgetStore` on a SQLite file. Reservations expire after ``ttl_s`` (a request's deadline
    plus slack), and on open those of processes no longer running on this host are dropped at once."""

    def __init__(self, path: str | Path, *, owner: str, ttl_s: float,
                 seed: Callable[[], list[tuple[str, str, str, float]]] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.owner = owner
        self.ttl_s = ttl_s
        self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()  # one connection: the tracker's thread, plus admin reads
        with self._tx() as c:
            owners = [r[0] for r in c.execute("SELECT DISTINCT owner FROM reservations")]
            for dead in (o for o in owners if not _pid_alive(o)):
                c.execute("DELETE FROM reservations WHERE owner = ?", (dead,))
            # A new counters file starts from the spend the ledger knows, once (in this same transaction,
            # so two workers starting together cannot both seed it).
            if seed is not None and c.execute("SELECT 1 FROM meta WHERE k = 'seeded'").fetchone() is None:
                c.execute("INSERT INTO meta VALUES ('seeded', ?)", (str(time.time()),))
                c.executemany("INSERT INTO spend VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET usd = usd + "
                              "excluded.usd", seed())

    def _tx(self) -> _Tx:
        return _Tx(self._conn, self._lock)

    def reserve(self, rid: str, counters: Sequence[Counter], blocking: Sequence[float | None],
                amount_usd: float) -> tuple[bool, list[float]]:
        now = time.time()
        with self._tx() as c:
            c.execute("DELETE FROM reservations WHERE expires < ?", (now,))
            spent = [float(c.execute(_SPENT, k).fetchone()[0]) for k in counters]
            if any(b is not None and s >= b for s, b in zip(spent, blocking, strict=True)):
                return False, spent
            if amount_usd > 0:
                c.executemany("INSERT OR REPLACE INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?)",
                              [(rid, *k, amount_usd, self.owner, now + self.ttl_s) for k in counters])
            return True, spent

    def settle(self, rid: str, counters: Sequence[Counter], actual_usd: float) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM reservations WHERE id = ?", (rid,))
            if actual_usd > 0:
                c.executemany("INSERT INTO spend VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET usd = usd + "
                              "excluded.usd", [(*k, actual_usd) for k in counters])

    def spent(self, counters: Sequence[Counter]) -> list[float]:
        with self._lock:
            return [float(self._conn.execute(_SPENT, k).fetchone()[0]) for k in counters]

    def raise_to(self, counter: Counter, own_usd: float) -> float:
        # One transaction: workers of one data dir catching up together add the missing spend once.
        with self._tx() as c:
            row = c.execute("SELECT usd FROM spend WHERE subject = ? AND period = ? AND window = ?", counter).fetchone()
            have = float(row[0]) if row else 0.0
            if own_usd - have <= 1e-12:
                return 0.0
            c.execute("INSERT INTO spend VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET usd = excluded.usd",
                      (*counter, own_usd))
            return own_usd - have

    def settled(self) -> list[tuple[str, str, str, float]]:
        """Every counter's settled spend (no reservations): what a shared store is seeded with."""
        with self._lock:
            return [(a, b, c, float(d)) for a, b, c, d in
                    self._conn.execute("SELECT subject, period, window, usd FROM spend WHERE usd > 0")]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _Tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` under the connection's lock: the write lock is taken before the
    first read, so no other process can slip a reservation between our check and our insert."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self.conn, self.lock = conn, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self.lock.release()


def _windows(now: float) -> dict[str, str]:
    t = time.gmtime(now)
    return {"daily": time.strftime("%Y-%m-%d", t), "monthly": time.strftime("%Y-%m", t)}


class BudgetTracker:
    """The budget policy (which limits apply, what crossing one means) over a :class:`BudgetStore`."""

    def __init__(self, budgets: dict[str, BudgetConfig], *, store_factory: Callable[[], BudgetStore],
                 on_warn: Callable[[str, str, float, float], None] | None = None) -> None:
        self._budgets = budgets  # subject ("tenant:x" / "key:y") -> config
        self._store_factory = store_factory
        self._store: BudgetStore | None = None
        self._on_warn = on_warn
        self._warned: set[Counter] = set()
        # One thread owns the store: reserve and settle of one process run in order, off the event loop.
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def configure(self, budgets: dict[str, BudgetConfig]) -> None:
        """New limits at run time (engine.overlay); spend so far is kept, as it lives in the store."""
        self._budgets = budgets
        self._warned.clear()

    def catch_up(self, subjects: Sequence[str], spend_of: Callable[[str, str, str], float],
                 now: float | None = None) -> None:
        """Bring the current windows' counters of ``subjects`` (budgets just added at run time: until then
        nothing counted their spend) up to ``spend_of(subject, period, window)``, the ledger's figure, so a
        daily budget set in the afternoon counts the morning. On replicas sharing a store each adds what its
        own ledger holds beyond what it counted (``BudgetStore.raise_to``). Runs on the tracker's store thread."""
        subjects = [s for s in subjects if s in self._budgets]
        if not subjects:
            return
        pool, store = self._executor()
        counters = [k for k, _, _ in self._limits(subjects, time.time() if now is None else now)]

        def run() -> None:
            # Each replica brings its own part up to its own ledger: on a shared store the parts add up.
            for k in counters:
                store.raise_to(k, spend_of(*k))

        pool.submit(run).result()

    def subjects(self, tenant: str, key_name: str | None) -> list[str]:
        if not self._budgets:
            return []  # the hot path without budgets: nothing to format or look up
        out = [f"tenant:{tenant}"]
        if key_name:
            out.append(f"key:{key_name}")
        return [s for s in out if s in self._budgets]

    def _limits(self, subjects: list[str], now: float) -> list[tuple[Counter, Limit, BudgetConfig]]:
        wins = _windows(now)
        out = []
        for subject in subjects:
            cfg = self._budgets[subject]
            for period, limit in (("daily", cfg.daily_usd), ("monthly", cfg.monthly_usd)):
                if limit is not None:
                    out.append(((subject, period, wins[period]), limit, cfg))
        return out

    def _executor(self) -> tuple[ThreadPoolExecutor, BudgetStore]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="thrifty-budgets")
            if self._store is None:
                self._store = self._store_factory()
            return self._pool, self._store

    async def reserve(self, tenant: str, key_name: str | None, expected_usd: float,
                      now: float | None = None) -> tuple[Verdict, Reservation | None]:
        """Check every budget of the request and reserve ``expected_usd`` against them, atomically.
        A rejected request reserves nothing; ``(ok, None)`` when no budget applies."""
        subjects = self.subjects(tenant, key_name)
        if not subjects:
            return Verdict("ok"), None
        limits = self._limits(subjects, now or time.time())
        if not limits:
            return Verdict("ok"), None
        pool, store = self._executor()
        counters = tuple(k for k, _, _ in limits)
        blocking = [lim.hard if cfg.on_hard == "reject" else None for _, lim, cfg in limits]
        rid = uuid.uuid4().hex
        amount = max(0.0, expected_usd)
        admitted, spent = await asyncio.get_running_loop().run_in_executor(
            pool, store.reserve, rid, counters, blocking, amount)
        worst = Verdict("ok")
        for (k, lim, cfg), s in zip(limits, spent, strict=True):
            v = self._judge(k, s, lim, cfg)
            if _RANK[v.action] > _RANK[worst.action]:
                worst = v
        return worst, (Reservation(rid, counters, amount) if admitted else None)

    def settle(self, reservation: Reservation | None, actual_usd: float) -> None:
        """Replace the reservation with the actual cost; queued on the store's thread, never blocks."""
        if reservation is None:
            return
        pool, store = self._executor()
        pool.submit(store.settle, reservation.id, reservation.counters, max(0.0, actual_usd))

    def flush(self) -> None:
        """Wait until every settle queued so far has landed."""
        if self._pool is not None:
            self._pool.submit(lambda: None).result()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._store is not None:
                self._store.close()
                self._store = None

    def _judge(self, k: Counter, spent: float, limit: Limit, cfg: BudgetConfig) -> Verdict:
        subject, period, window = k
        if limit.hard is not None and spent >= limit.hard:
            msg = (f"{subject} has spent ${spent:.4f} (settled, plus requests in flight) of its {period} hard "
                   f"limit ${limit.hard:.2f} ({window})")
            return Verdict("reject" if cfg.on_hard == "reject" else "downgrade", msg)
        if limit.soft is not None and spent >= limit.soft:
            msg = f"{subject} passed its {period} soft limit: ${spent:.4f} of ${limit.soft:.2f} ({window})"
            if k not in self._warned:
                self._warned.add(k)
                log.warning("budget warning: %s", msg)
                if self._on_warn is not None:
                    self._on_warn(subject, period, spent, limit.soft)
            return Verdict("warn", msg)
        return Verdict("ok")

    def states(self, now: float | None = None) -> list[BudgetState]:
        limits = self._limits(list(self._budgets), now or time.time())
        if not limits:
            return []
        pool, store = self._executor()
        spent = pool.submit(store.spent, [k for k, _, _ in limits]).result()
        return [BudgetState(k[0], k[1], k[2], round(s, 6), lim.soft, lim.hard, self._judge(k, s, lim, cfg).action)
                for (k, lim, cfg), s in zip(limits, spent, strict=True)]
