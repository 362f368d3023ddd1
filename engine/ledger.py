"""The usage ledger: one row per request in SQLite (WAL), written off the request path.

Requests hand a :class:`UsageRecord` to :meth:`Ledger.record`, which only enqueues it; a writer thread
batches rows into one transaction. Several proxy workers may share the file: WAL mode plus a busy
timeout serialise their writers, and readers never block. Prompt and answer text are stored only when
``log_content`` is on.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgspec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id        TEXT PRIMARY KEY,
    ts                REAL NOT NULL,
    day               TEXT NOT NULL,
    month             TEXT NOT NULL,
    tenant            TEXT NOT NULL,
    virtual_key       TEXT,
    worker            TEXT,
    route             TEXT,
    model             TEXT,
    provider          TEXT,
    task              TEXT,
    stream            INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens  INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    cost_estimated    INTEGER NOT NULL DEFAULT 0,
    saved_usd         REAL NOT NULL DEFAULT 0,
    cache             TEXT NOT NULL,
    status            INTEGER NOT NULL,
    error_class       TEXT,
    latency_ms        REAL NOT NULL DEFAULT 0,
    overhead_ms       REAL NOT NULL DEFAULT 0,
    stages            TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    budget_action     TEXT,
    prompt            TEXT,
    answer            TEXT
);
CREATE INDEX IF NOT EXISTS requests_tenant_day ON requests (tenant, day);
CREATE INDEX IF NOT EXISTS requests_vkey_day ON requests (virtual_key, day);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""


class UsageRecord(msgspec.Struct, kw_only=True):
    request_id: str
    ts: float
    tenant: str
    cache: str  # exact | hit | miss | bypass | error
    status: int
    virtual_key: str | None = None
    worker: str | None = None  # which process wrote the row: budgets sum other workers' spend from here
    route: str | None = None
    model: str | None = None
    provider: str | None = None
    task: str | None = None
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    cost_estimated: bool = False
    saved_usd: float = 0.0
    error_class: str | None = None
    latency_ms: float = 0.0
    overhead_ms: float = 0.0
    stages: dict[str, float] = {}
    attempts: int = 0
    budget_action: str | None = None
    prompt: str | None = None
    answer: str | None = None


_COLUMNS = (*UsageRecord.__struct_fields__, "day", "month")
_INSERT = (
    f"INSERT OR REPLACE INTO requests ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
_stage_encoder = msgspec.json.Encoder()


def _row(rec: UsageRecord) -> tuple[Any, ...]:
    t = time.gmtime(rec.ts)
    values: list[Any] = []
    for name in UsageRecord.__struct_fields__:
        v = getattr(rec, name)
        if name == "stages":
            v = _stage_encoder.encode(v).decode()
        elif isinstance(v, bool):
            v = int(v)
        values.append(v)
    values.append(time.strftime("%Y-%m-%d", t))
    values.append(time.strftime("%Y-%m", t))
    return tuple(values)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


_BATCH = 512  # rows per transaction


class Ledger:
    """SQLite usage ledger with a background batch writer."""

    def __init__(self, path: str | Path, *, log_content: bool = False, flush_interval: float = 0.05) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.log_content = log_content
        self._flush_interval = flush_interval
        # A deque the writer drains on a timer: appending wakes no thread, so the event loop never
        # hands the GIL to the writer in the middle of a request (one wake-up per row did: p99).
        self._queue: deque[UsageRecord | threading.Event | None] = deque()
        self._wake = threading.Event()
        self._read = _connect(self.path)
        self._read_lock = threading.Lock()
        self._read.executescript(_SCHEMA)
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------------------------------ writes
    def record(self, rec: UsageRecord) -> None:
        """Enqueue one row; never blocks the caller on disk."""
        if self._closed:
            raise RuntimeError("ledger is closed")
        if not self.log_content:
            rec.prompt = None
            rec.answer = None
        if self._thread is None:
            self._start()
        self._queue.append(rec)
        if len(self._queue) >= _BATCH:
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every row recorded so far is committed."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        if not done.wait(timeout):
            raise TimeoutError("ledger writer did not flush in time")

    def close(self) -> None:
        if self._closed:
            return
        if self._thread is not None:
            self._queue.append(None)
            self._wake.set()
            self._thread.join(timeout=30)
        self._closed = True
        with self._read_lock:
            self._read.close()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._writer, name="thrifty-ledger", daemon=True)
        self._thread.start()

    def _writer(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                self._wake.wait(self._flush_interval)
                self._wake.clear()
                if self._drain(conn):
                    return
        finally:
            conn.close()

    def _drain(self, conn: sqlite3.Connection) -> bool:
        """Write everything queued so far, then release its waiters; True once close() was asked."""
        batch: list[UsageRecord] = []
        waiters: list[threading.Event] = []
        stop = False
        while self._queue:
            item = self._queue.popleft()
            if item is None:
                stop = True
            elif isinstance(item, threading.Event):
                waiters.append(item)
            else:
                batch.append(item)
                if len(batch) >= _BATCH:
                    self._write(conn, batch)
                    batch = []
        if batch:
            self._write(conn, batch)
        for w in waiters:
            w.set()
        return stop

    @staticmethod
    def _write(conn: sqlite3.Connection, batch: list[UsageRecord]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, [_row(r) for r in batch])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------------------------------ reads
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._read_lock:
            cur = self._read.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def spend(self, *, tenant: str | None = None, virtual_key: str | None = None,
              day: str | None = None, month: str | None = None, exclude_worker: str | None = None) -> float:
        """Total cost in USD for a tenant or key over a day (YYYY-MM-DD) or month (YYYY-MM)."""
        where, params = _filters(tenant=tenant, virtual_key=virtual_key, day=day, month=month)
        if exclude_worker is not None:
            where += (" AND" if where else " WHERE") + " (worker IS NULL OR worker != ?)"
            params = (*params, exclude_worker)
        rows = self.query(f"SELECT COALESCE(SUM(cost_usd), 0) AS s FROM requests{where}", params)
        return float(rows[0]["s"])

    def summary(self, *, since: float | None = None, tenant: str | None = None) -> dict[str, Any]:
        """Aggregations for the admin API and the dashboard."""
        where, params = _filters(tenant=tenant, since=since)
        totals = self.query(
            "SELECT COUNT(*) AS requests, COALESCE(SUM(cost_usd),0) AS spend_usd, "
            "COALESCE(SUM(saved_usd),0) AS saved_usd, "
            "SUM(CASE WHEN cache IN ('exact','hit') THEN 1 ELSE 0 END) AS hits, "
            "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors, "
            "COALESCE(SUM(prompt_tokens),0) AS prompt_tokens, "
            f"COALESCE(SUM(completion_tokens),0) AS completion_tokens FROM requests{where}",
            params,
        )[0]
        n = totals["requests"] or 0
        totals["hit_rate"] = (totals["hits"] or 0) / n if n else 0.0
        out: dict[str, Any] = {"totals": totals}
        for dim in ("day", "model", "provider", "tenant", "cache"):
            out[f"by_{dim}"] = self.query(
                f"SELECT {dim} AS key, COUNT(*) AS requests, COALESCE(SUM(cost_usd),0) AS spend_usd, "
                f"COALESCE(SUM(saved_usd),0) AS saved_usd FROM requests{where} "
                f"GROUP BY {dim} ORDER BY spend_usd DESC, requests DESC",
                params,
            )
        out["latency_ms"] = self._percentiles(where, params)
        return out

    def _percentiles(self, where: str, params: tuple[Any, ...]) -> dict[str, float]:
        rows = self.query(f"SELECT latency_ms, overhead_ms FROM requests{where} ORDER BY ts DESC LIMIT 100000", params)
        if not rows:
            return {}
        import numpy as np

        lat = np.array([r["latency_ms"] for r in rows], dtype=np.float64)
        ovh = np.array([r["overhead_ms"] for r in rows], dtype=np.float64)
        return {
            "latency_p50": float(np.percentile(lat, 50)),
            "latency_p99": float(np.percentile(lat, 99)),
            "overhead_p50": float(np.percentile(ovh, 50)),
            "overhead_p99": float(np.percentile(ovh, 99)),
        }


def _filters(**kw: Any) -> tuple[str, tuple[Any, ...]]:
    clauses, params = [], []
    for key, value in kw.items():
        if value is None:
            continue
        if key == "since":
            clauses.append("ts >= ?")
        else:
            clauses.append(f"{key} = ?")
        params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
