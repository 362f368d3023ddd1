"""Dashboard sessions: a login with the admin key gets a random session id in an HTTP-only, SameSite=Strict
cookie; the server keeps the session (never the key) in ``<data_dir>/ui_sessions.sqlite3``, so every worker
process of one data dir knows it. Only a hash of the id is stored: the file alone opens no session.

State-changing calls made with the cookie must also carry the session's CSRF token in ``x-thrifty-csrf``
(the page reads it from ``GET /ui/session``, a same-origin call): a cross-site form cannot set a header,
and SameSite=Strict keeps the cookie off cross-site requests in the first place.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from pathlib import Path

import msgspec
from starlette.requests import Request

from engine.errors import AuthError, ForbiddenError

COOKIE = "thrifty_session"
CSRF_HEADER = "x-thrifty-csrf"
TTL_S = 12 * 3600.0
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY, csrf TEXT NOT NULL, short TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires);
"""


class Session(msgspec.Struct, frozen=True):
    short: str  # a non-secret label for the audit log ("admin:<short>")
    csrf: str
    expires: float


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    """Server-side sessions; the SQLite file is opened on first use (no work at import or construction)."""

    def __init__(self, path: Path, ttl_s: float = TTL_S) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    def create(self) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(short=secrets.token_hex(4), csrf=secrets.token_urlsafe(24), expires=now + self.ttl_s)
        with self._lock:
            db = self._db()
            db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                       (_hash(sid), session.csrf, session.short, now, session.expires))
        return sid, session

    def get(self, sid: str) -> Session | None:
        with self._lock:
            row = self._db().execute("SELECT short, csrf, expires FROM sessions WHERE id_hash = ?",
                                     (_hash(sid),)).fetchone()
        if row is None or row[2] < time.time():
            return None
        return Session(short=row[0], csrf=row[1], expires=row[2])

    def delete(self, sid: str) -> None:
        with self._lock:
            self._db().execute("DELETE FROM sessions WHERE id_hash = ?", (_hash(sid),))

    @staticmethod
    def cookie_of(request: Request) -> str | None:
        return request.cookies.get(COOKIE) or None

    def of(self, request: Request) -> Session:
        sid = self.cookie_of(request)
        session = self.get(sid) if sid else None
        if session is None:
            raise AuthError("not signed in, or the session expired: sign in at /ui")
        return session

    def actor(self, request: Request) -> str:
        """The audit actor of a request made with a session cookie; writes need the CSRF header too."""
        session = self.of(request)
        if request.method not in _SAFE:
            token = request.headers.get(CSRF_HEADER, "")
            if not token or not hmac.compare_digest(token.encode(), session.csrf.encode()):
                raise ForbiddenError(f"missing or wrong {CSRF_HEADER} header: a change made with the dashboard's "
                                     f"session must carry its CSRF token")
        return f"admin:{session.short}"

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
