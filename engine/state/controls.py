"""Run-time controls shared by every replica: a change made through one replica's admin API or dashboard
(``engine.overlay``) reaches the others within about a second.

The shared overlay is one JSON document in ``<prefix>:overlay``: ``{"overlay", "actor", "replica"}``. The
replica that takes a change merges its patch into the document in one optimistic transaction (WATCH, GET,
MULTI, SET, EXEC; retried when another replica wrote in between), so two replicas changing different
settings at once both keep theirs. Every replica's overlay watch reads the document once a second (one
GET of a small value); one it has not applied yet is merged over its own overlay file and applied as a
change from another worker of its data dir is. A replica that starts later adopts the document at its
first look.

While Redis is down a change applies on the replica that took it, and its patch waits; when Redis answers
the patches are merged into the document, in order. A Redis that comes back empty is re-seeded from the
replica's own overlay file first (every replica's file holds what it adopted, so the union comes back).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from engine.state._redis import Connection

log = logging.getLogger("thrifty.state")


class SharedControls:
    def __init__(self, conn: Connection, *, replica: str) -> None:
        self.conn = conn
        self.replica = replica
        self.key = conn.key("overlay")
        self.local: Callable[[], dict[str, Any]] | None = None  # this replica's overlay file (engine.overlay)
        self._seen: bytes | None = None  # the document last applied here
        self._pending: list[tuple[dict[str, Any], str]] = []  # (patch, actor) not yet in the shared document
        self._lock = threading.Lock()
        conn.on_up(self.flush)

    @property
    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p for p, _ in self._pending]

    def publish(self, patch: dict[str, Any], actor: str) -> bool:
        """Merge ``patch`` (already applied here) into the shared overlay; False while Redis is down (the
        patch waits for it)."""
        with self._lock:
            self._pending.append((patch, actor))
        return self.flush()

    def flush(self) -> bool:
        """Send the waiting patches (run again by the connection when Redis answers after an outage)."""
        with self._lock:
            ok, _ = self.conn.call("overlay re-seed", self._merge, None, "")
            if not ok:
                return False
            while self._pending:
                patch, actor = self._pending[0]
                ok, _ = self.conn.call("overlay publish", self._merge, patch, actor)
                if not ok:
                    return False
                self._pending.pop(0)
        return True

    def _merge(self, patch: dict[str, Any] | None, actor: str) -> None:
        """``patch`` merged into the shared document; ``None``: only re-seed a missing document from the
        local overlay file."""
        from engine.overlay import merge_patch

        with self.conn.sync.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.key)
                    raw = pipe.get(self.key)
                    if raw is None:
                        doc = dict(self.local()) if self.local is not None else {}
                        actor = actor or "re-seed"
                    elif patch is None:
                        pipe.unwatch()
                        return
                    else:
                        doc = json.loads(raw)["overlay"]
                    if patch is not None:
                        merge_patch(doc, patch)
                    if not doc:
                        pipe.unwatch()
                        return
                    pipe.multi()
                    pipe.set(self.key, json.dumps({"overlay": doc, "actor": actor, "replica": self.replica}))
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue  # another replica wrote between our read and our write: read again

    def fetch(self) -> tuple[bytes, dict[str, Any], str, str] | None:
        """``(document, overlay, actor, replica)`` of the shared overlay when it is not the one last applied
        here (see :meth:`applied`), else None (also while Redis is down)."""
        ok, raw = self.conn.call("overlay read", self.conn.sync.get, self.key)
        if not ok or raw is None or raw == self._seen:
            return None
        try:
            doc = json.loads(raw)
            return raw, dict(doc["overlay"]), str(doc.get("actor", "?")), str(doc.get("replica", "?"))
        except (ValueError, KeyError, TypeError) as exc:
            log.error("state: %s is not a thrifty overlay (%s); ignored", self.key, exc)
            self._seen = raw
            return None

    def applied(self, document: bytes) -> None:
        self._seen = document
