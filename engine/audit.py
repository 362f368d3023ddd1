"""The audit log: who changed what, when, from what to what.

Every change an operator makes at run time (a budget, a routing rule, the cache mode, an experiment's
promotion) is one :class:`AuditEvent` in ``<data_dir>/audit.sqlite3``. Changes are rare and must never be
lost, so each is committed before the call returns (WAL, ``synchronous=FULL``); several worker processes
share the file. Old and new values are stored as JSON.

    GET /admin/audit?limit=&before=   newest first -> {"data": [...], "next_before": ts | null}
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["AuditEvent", "AuditLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    old     TEXT,
    new     TEXT,
    detail  TEXT
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
"""
MAX_LIMIT = 1000

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


class AuditEvent(msgspec.Struct, frozen=True):
    ts: float
    actor: str
    action: str
    target: str
    old: Any = None
    new: Any = None
    detail: str | None = None
    id: int = 0


class AuditLog:
    """An append-only table of :class:`AuditEvent`; thread-safe, one connection per instance."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def record(self, actor: str, action: str, target: str, old: Any = None, new: Any = None,
               detail: str | None = None) -> AuditEvent:
        """Append one event, committed before returning."""
        ts = time.time()
        old_s = _enc.encode(old).decode() if old is not None else None
        new_s = _enc.encode(new).decode() if new is not None else None
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO audit (ts, actor, action, target, old, new, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ts, actor, action, target, old_s, new_s, detail))
            rowid = int(cur.lastrowid or 0)
        return AuditEvent(ts=ts, actor=actor, action=action, target=target, old=old, new=new, detail=detail,
                          id=rowid)

    def recent(self, limit: int = 100, before_ts: float | None = None, action_prefix: str | None = None
               ) -> list[AuditEvent]:
        """Newest first; ``before_ts`` pages back; ``action_prefix`` filters (``"experiment."``)."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        sql = "SELECT id, ts, actor, action, target, old, new, detail FROM audit"
        where: list[str] = []
        args: list[Any] = []
        if before_ts is not None:
            where.append("ts < ?")
            args.append(before_ts)
        if action_prefix:
            where.append("substr(action, 1, ?) = ?")
            args += [len(action_prefix), action_prefix]
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [AuditEvent(id=r[0], ts=r[1], actor=r[2], action=r[3], target=r[4],
                           old=_dec.decode(r[5]) if r[5] is not None else None,
                           new=_dec.decode(r[6]) if r[6] is not None else None, detail=r[7]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
