"""The usage ledger: one row per request in SQLite (WAL), written off the request path.

Rows are keyed by a server-made id (``request_id``); the caller's ``x-request-id`` is kept beside it in
``client_request_id`` and is never a key, so no caller can overwrite or merge rows. Rows are only ever
INSERTed (``OR IGNORE``: a replayed journal line that already landed is skipped, never replaced).

Requests hand a :class:`UsageRecord` to :meth:`Ledger.record`, which copies it into this process's
memory-mapped journal (``engine._journal``: no system call; the page cache keeps it if the process is
killed) and enqueues it; a writer thread batches rows into one transaction every ``flush_interval``
seconds, then drops the journal segment that held them. On open, and every few seconds, a ledger replays
the journals of processes that died (their ``.lock`` file is no longer flock-held). So a SIGKILL loses no
completed row; a power loss can lose the rows of about the last flush interval (the journal is not
fsynced). Several workers may share the file: WAL mode plus a busy timeout serialise their writers, and
readers never block.
Prompt and answer text are stored only when ``log_content`` is on.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from engine import _journal

log = logging.getLogger("thrifty.ledger")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id        TEXT PRIMARY KEY,  -- made by the server, never by the caller
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
    answer            TEXT,
    client_request_id TEXT,  -- the caller's x-request-id, as sent (for correlation only)
    routing           TEXT,  -- the router's decision as JSON (engine.ledger.Routing), on routed requests
    namespace         TEXT,  -- the cache space (cache.scope.space: "tenant/ns", "/ns" when shared)
    entry_id          INTEGER,  -- the cache entry served (hit, exact) or, in shadow mode, the would-be hit
    similarity        REAL,  -- that entry's similarity to the request
    hit_score         REAL,  -- and the hit policy's score of it (cosine, or the learned verifier's probability)
    experiment        TEXT,  -- engine.experiments: the experiment this request was assigned to, and its arm
    arm               TEXT
);
CREATE INDEX IF NOT EXISTS requests_tenant_day ON requests (tenant, day);
CREATE INDEX IF NOT EXISTS requests_vkey_day ON requests (virtual_key, day);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""
_INDEX_CLIENT_ID = "CREATE INDEX IF NOT EXISTS requests_client_id ON requests (tenant, client_request_id)"
# Quality labels (engine.feedback, engine.shadow): one row per verdict on a request's (would-be) cached answer.
# Read by `thrifty tune`, /admin/stats and the experiments (joined on request_id): keep this schema.
_LABELS = """
CREATE TABLE IF NOT EXISTS labels (
    request_id TEXT,
    tenant     TEXT,
    namespace  TEXT,
    ts         REAL,
    source     TEXT,     -- 'feedback' | 'shadow' | 'judge' | 'nearmiss'
    good       INTEGER,  -- 1: the cached answer was right for the request, 0: wrong
    score      REAL NULL,
    entry_id   INTEGER NULL,
    similarity REAL NULL,
    detail     TEXT NULL
);
CREATE INDEX IF NOT EXISTS labels_request ON labels (request_id);
CREATE INDEX IF NOT EXISTS labels_namespace ON labels (tenant, namespace);
"""
_LABEL_COLUMNS = ("request_id", "tenant", "namespace", "ts", "source", "good", "score", "entry_id", "similarity",
                  "detail")


class Routing(msgspec.Struct, omit_defaults=True):
    """Why a request went where it went, compactly: the ranked candidates as
    ``[deployment, predicted quality, expected cost in USD]`` (best first) and the dropped models with
    their reasons."""

    chosen: str
    policy: str
    task: str
    candidates: list[tuple[str, float, float]] = []
    dropped: list[tuple[str, str]] = []


def routing_of(decision: Any) -> Routing | None:
    """The compact form of a ``router.rank.Decision`` (a few tuples: cheap on the request path)."""
    if not decision.candidates:
        return None
    return Routing(chosen=decision.candidates[0].deployment, policy=decision.policy, task=decision.task,
                   candidates=[(c.route.deployment, c.predicted_quality, c.expected_cost_usd)
                               for c in decision.candidates],
                   dropped=decision.dropped)  # the Decision is not changed after ranking: no copy


class UsageRecord(msgspec.Struct, kw_only=True):
    request_id: str  # the server's id for the request
    ts: float
    tenant: str
    cache: str  # exact | hit | miss | bypass | error
    status: int
    client_request_id: str | None = None
    virtual_key: str | None = None
    worker: str | None = None  # which process wrote the row
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
    routing: Routing | None = None
    namespace: str | None = None
    entry_id: int | None = None
    similarity: float | None = None
    hit_score: float | None = None
    experiment: str | None = None
    arm: str | None = None


class Label(msgspec.Struct, kw_only=True):
    """One row of the ``labels`` table."""

    request_id: str
    tenant: str
    namespace: str | None
    source: str  # feedback | shadow | judge | nearmiss
    good: bool
    ts: float = 0.0  # 0: now
    score: float | None = None
    entry_id: int | None = None
    similarity: float | None = None
    detail: str | None = None


_COLUMNS = (*UsageRecord.__struct_fields__, "day", "month")
_INSERT = (
    f"INSERT OR IGNORE INTO requests ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
_stage_encoder = msgspec.json.Encoder()
_journal_encoder = msgspec.json.Encoder()
_journal_decoder = msgspec.json.Decoder(UsageRecord)


def new_request_id() -> str:
    return uuid.uuid4().hex


def _row(rec: UsageRecord) -> tuple[Any, ...]:
    t = time.gmtime(rec.ts)
    values: list[Any] = []
    for name in UsageRecord.__struct_fields__:
        v = getattr(rec, name)
        if name == "stages" or (name == "routing" and v is not None):
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


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an older ledger file up to this schema in place; no row is rewritten or lost. Older files
    keyed rows by the caller's id: those rows keep it as their key, and new rows get server ids."""
    conn.executescript(_SCHEMA)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(requests)")}
    if "client_request_id" not in columns:
        conn.execute("ALTER TABLE requests ADD COLUMN client_request_id TEXT")
    if "routing" not in columns:
        conn.execute("ALTER TABLE requests ADD COLUMN routing TEXT")
    for name, kind in (("namespace", "TEXT"), ("entry_id", "INTEGER"), ("similarity", "REAL"),
                       ("hit_score", "REAL"), ("experiment", "TEXT"), ("arm", "TEXT")):
        if name not in columns:
            conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {kind}")
    # Partial: rows outside experiments (most) cost the index nothing.
    conn.execute("CREATE INDEX IF NOT EXISTS requests_experiment ON requests (experiment, ts) "
                 "WHERE experiment IS NOT NULL")
    conn.executescript(_LABELS)
    conn.execute(_INDEX_CLIENT_ID)


def _write(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


_BATCH = 512  # rows per transaction
_REPLAY_EVERY_S = 5.0  # how often a running writer looks for the journals of dead processes


def replay_dead_journals(directory: Path, conn: sqlite3.Connection) -> int:
    """Insert the rows in the journals of every owner that is gone (idempotent); how many were read."""
    total = 0
    for owner, segments, fd in _journal.dead_owners(directory):
        try:
            rows = []
            for seg in segments:
                for payload in _journal.read_records(seg):
                    try:
                        rows.append(_row(_journal_decoder.decode(payload)))
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        log.warning("ledger journal %s: skipped an unreadable record", seg.name)
            for i in range(0, len(rows), _BATCH):
                _write(conn, rows[i:i + _BATCH])
        except BaseException:
            os.close(fd)
            raise
        _journal.release(directory, owner, segments, fd)
        if rows:
            log.warning("ledger: replayed %d rows from the journal of a process that stopped", len(rows))
        total += len(rows)
    return total


class Ledger:
    """SQLite usage ledger with a crash journal and a background batch writer."""

    def __init__(self, path: str | Path, *, log_content: bool = False, flush_interval: float = 0.05,
                 journal: bool = True, owner: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.log_content = log_content
        self._flush_interval = flush_interval
        self._journal_dir = self.path.parent / (self.path.name + ".journal")
        self._use_journal = journal
        self._owner = owner or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._journal: _journal.Journal | None = None
        self._full: list[_journal.Segment] = []  # segments filled between two flushes (rare)
        # A list the writer swaps out on a timer: appending wakes no thread, so the event loop never
        # hands the GIL to the writer in the middle of a request (one wake-up per row did: p99).
        self._queue: list[UsageRecord] = []
        self._waiters: list[threading.Event] = []
        self._stop = False
        self._mutex = threading.Lock()  # journal write + enqueue are one step against rotation
        self._wake = threading.Event()
        self._read = _connect(self.path)
        self._read_lock = threading.Lock()
        _migrate(self._read)
        if journal:
            replay_dead_journals(self._journal_dir, self._read)
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------------------------------ writes
    def record(self, rec: UsageRecord) -> None:
        """Journal and enqueue one row; never waits on SQLite."""
        if self._closed:
            raise RuntimeError("ledger is closed")
        if not self.log_content:
            rec.prompt = None
            rec.answer = None
        if self._thread is None:
            self._start()
        payload = _journal_encoder.encode(rec) if self._journal is not None else b""
        with self._mutex:
            if self._journal is not None:
                full = self._journal.append(payload)  # a memory copy into the mapped journal
                if full is not None:
                    self._full.append(full)
            self._queue.append(rec)
            n = len(self._queue)
        if n >= _BATCH:
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every row recorded so far is committed."""
        if self._thread is None:
            return
        done = threading.Event()
        with self._mutex:
            self._waiters.append(done)
        self._wake.set()
        if not done.wait(timeout):
            raise TimeoutError("ledger writer did not flush in time")

    def close(self) -> None:
        if self._closed:
            return
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join(timeout=30)
        self._closed = True
        if self._journal is not None:
            self._journal.close(drop=not self._queue)  # every row landed: nothing to replay
        with self._read_lock:
            self._read.close()

    def _start(self) -> None:
        with self._mutex:
            if self._thread is not None:
                return
            if self._use_journal:
                self._journal = _journal.Journal(self._journal_dir, self._owner)
            self._thread = threading.Thread(target=self._writer, name="thrifty-ledger", daemon=True)
            self._thread.start()

    def _writer(self) -> None:
        conn = _connect(self.path)
        next_replay = time.monotonic() + _REPLAY_EVERY_S
        try:
            while True:
                self._wake.wait(self._flush_interval)
                self._wake.clear()
                stop = self._stop
                self._drain(conn)
                if stop:
                    return
                if self._use_journal and time.monotonic() >= next_replay:
                    next_replay = time.monotonic() + _REPLAY_EVERY_S
                    try:
                        replay_dead_journals(self._journal_dir, conn)
                    except (OSError, sqlite3.Error) as exc:
                        log.warning("ledger: journal replay failed: %s", exc)
        finally:
            conn.close()

    def _drain(self, conn: sqlite3.Connection) -> None:
        """Write everything queued so far, drop the journal segments that held it, release the waiters."""
        # The next segment is made here, off the lock the request path takes.
        fresh = self._journal.next_segment() if self._queue and self._journal is not None else None
        with self._mutex:
            batch, self._queue = self._queue, []
            waiters, self._waiters = self._waiters, []
            done, self._full = self._full, []
            if fresh is not None and self._journal is not None:
                done.append(self._journal.swap(fresh))
        try:
            for i in range(0, len(batch), _BATCH):
                _write(conn, [_row(r) for r in batch[i:i + _BATCH]])
            written = True
        except sqlite3.Error as exc:
            # The rows stay in the journal file, which is kept: a later replay lands them.
            log.error("ledger: %d rows not written (%s); they stay in the journal", len(batch), exc)
            written = False
        for seg in done:
            if not written:
                seg.close()  # the file stays for a later replay
            elif self._journal is not None:
                self._journal.recycle(seg)
        for w in waiters:
            w.set()

    # ------------------------------------------------------------------------------------------ reads
    # ------------------------------------------------------------------------------------------ labels
    def add_label(self, label: Label) -> None:
        """Insert one quality label (feedback, shadow, judge, near miss); called off the request path."""
        row = (label.request_id, label.tenant, label.namespace, label.ts or time.time(), label.source,
               int(label.good), label.score, label.entry_id, label.similarity, label.detail)
        with self._read_lock:
            self._read.execute(f"INSERT INTO labels ({', '.join(_LABEL_COLUMNS)}) "
                               f"VALUES ({', '.join('?' for _ in _LABEL_COLUMNS)})", row)

    def request_of(self, request_id: str, tenant: str) -> dict[str, Any] | None:
        """The ledger row ``request_id`` of ``tenant`` (cache outcome, namespace, entry served), or None:
        another tenant's id reads exactly like an unknown one."""
        rows = self.query("SELECT request_id, tenant, cache, namespace, entry_id, similarity, hit_score, saved_usd "
                          "FROM requests WHERE request_id = ? AND tenant = ?", (request_id, tenant))
        return rows[0] if rows else None

    def label_summary(self, *, tenant: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """Per (tenant, namespace): requests, hits, money saved, and the labels of served and would-be hits."""
        where, params = _filters(tenant=tenant, since=since)
        reqs = self.query(
            "SELECT tenant, namespace, COUNT(*) AS requests, "
            "SUM(CASE WHEN cache IN ('exact','hit') THEN 1 ELSE 0 END) AS hits, "
            f"COALESCE(SUM(saved_usd),0) AS saved_usd FROM requests{where} GROUP BY tenant, namespace", params)
        # Only labels of cached answers (served, or would-be in shadow mode) estimate false hits.
        lwhere = where + (" AND" if where else " WHERE") + " entry_id IS NOT NULL AND source != 'nearmiss'"
        labs = self.query(
            "SELECT tenant, namespace, source, SUM(good) AS good, COUNT(*) AS n FROM labels"
            f"{lwhere} GROUP BY tenant, namespace, source", params)
        out: dict[tuple[Any, Any], dict[str, Any]] = {}
        for r in reqs:
            out[(r["tenant"], r["namespace"])] = {**r, "labels": {}}
        for r in labs:
            slot = out.setdefault((r["tenant"], r["namespace"]), {
                "tenant": r["tenant"], "namespace": r["namespace"], "requests": 0, "hits": 0, "saved_usd": 0.0,
                "labels": {}})
            slot["labels"][r["source"]] = {"good": int(r["good"] or 0), "bad": int(r["n"] - (r["good"] or 0))}
        # Shadowed exact hits (same request again: the cached answer is right by definition) measure the
        # comparison's own false "bad" rate.
        cond: list[str] = []
        cparams: list[Any] = []
        for col, value in (("tenant", tenant), ("ts", since)):
            if value is not None:
                cond.append(f"l.{col} {'>=' if col == 'ts' else '='} ?")
                cparams.append(value)
        exact = self.query(
            "SELECT l.tenant AS tenant, l.namespace AS namespace, SUM(l.good) AS good, COUNT(*) AS n FROM labels l "
            "JOIN requests r ON r.request_id = l.request_id WHERE l.source IN ('shadow', 'judge') "
            "AND l.entry_id IS NOT NULL AND r.hit_score IS NULL AND r.cache = 'miss'"
            + "".join(" AND " + c for c in cond) + " GROUP BY l.tenant, l.namespace", tuple(cparams))
        for r in exact:
            found = out.get((r["tenant"], r["namespace"]))
            if found is not None:
                found["exact_shadow"] = {"good": int(r["good"] or 0), "bad": int(r["n"] - (r["good"] or 0))}
        return list(out.values())

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
