"""Feedback behind a load balancer: a request served by one replica can be rated through any of them.

Every request a replica records is also written, off the request path and in batches, to
``<prefix>:req:<request id>`` (expiring after ``TTL_S``): its tenant, cache space and outcome, and the exact
key of the cache entry it was served from (replicas' entry ids differ; exact keys do not). A replica asked
for feedback on a request its own ledger does not hold reads it there; another tenant's request reads as
unknown. ``<prefix>:rated:<request id>`` (``SET NX``) makes "already rated" hold across replicas. While
Redis is down, records are dropped (counted) and feedback works for the replica's own requests only.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.state._redis import Connection

log = logging.getLogger("thrifty.state")

TTL_S = 7 * 86400  # how long a request can be rated through another replica
_MAX_QUEUED = 100_000


class FeedbackIndex:
    def __init__(self, conn: Connection, *, on_dropped: Any = None) -> None:
        self.conn = conn
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="thrifty-feedback-index")
        self._queue: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._scheduled = False
        self._on_dropped = on_dropped

    def _key(self, *parts: str) -> str:
        return self.conn.key(*parts)

    def add(self, request_id: str, record: dict[str, Any]) -> None:
        """Queue ``record`` (tenant, namespace, cache, key, similarity, hit_score) of ``request_id``."""
        with self._lock:
            if len(self._queue) >= _MAX_QUEUED:
                return
            self._queue.append((request_id, json.dumps(record, separators=(",", ":")).encode()))
            if self._scheduled:
                return
            self._scheduled = True
        self._pool.submit(self._flush)

    def _flush(self) -> None:
        with self._lock:
            batch, self._queue, self._scheduled = self._queue, [], False
        if not batch:
            return

        def send() -> None:
            pipe = self.conn.sync.pipeline(transaction=False)
            for rid, doc in batch:
                pipe.set(self._key("req", rid), doc, ex=TTL_S)
            pipe.execute()

        ok, _ = self.conn.call("feedback index", send)
        if not ok and self._on_dropped is not None:
            self._on_dropped(len(batch))

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The record of ``request_id`` (any replica's), or None (unknown, expired, or Redis down)."""
        ok, raw = self.conn.call("feedback index read", self.conn.sync.get, self._key("req", request_id))
        if not ok or raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def claim_rating(self, request_id: str) -> bool | None:
        """True for the first rating of ``request_id`` on any replica, False for a repeat, None when Redis
        is down (the replica's own ledger then decides)."""
        ok, first = self.conn.call("feedback claim", self.conn.sync.set, self._key("rated", request_id), b"1",
                                   nx=True, ex=TTL_S)
        return bool(first) if ok else None

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every record queued so far was sent (tests)."""
        self._pool.submit(lambda: None).result(timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
