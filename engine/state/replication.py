"""Cache replication between replicas through a Redis Stream.

Every replica keeps its own LMDB + FAISS cache (hits stay local). The cache facade tells a
:class:`CacheReplicator` of each insert, delete and purge (``SemanticCache.listener``); a publisher
thread appends them to the stream ``<prefix>:cache:log`` (``XADD … MAXLEN ~ stream_maxlen``), and a
consumer thread on every replica reads it (``XREAD BLOCK``) and applies the other replicas' entries with
``SemanticCache.apply_replicated``, which tells nobody: nothing is published twice.

Messages carry the origin replica, the kind and a msgpack body: the stored entry and its vector (an
entry keeps its creation and expiry times everywhere), the exact keys of deleted entries, or a purged
namespace. A replica persists the last stream id it applied next to its cache; a new replica, or one
whose position the stream has trimmed away, first loads the latest snapshot (a cache export written to
Redis every ``snapshot_every`` stream entries by one replica, under a ``SET NX`` lease) and then reads
the stream from the snapshot's position. While Redis is down, changes wait in a bounded queue and the
consumer retries; both catch up when it answers.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import redis

from cache.store import Entry
from engine.state._redis import ERRORS, Connection

log = logging.getLogger("thrifty.state")

_Add = tuple[Entry, bytes | None]
_add_dec = msgspec.msgpack.Decoder(list[_Add])
_del_dec = msgspec.msgpack.Decoder(list[tuple[bytes, float]])
_enc = msgspec.msgpack.Encoder()
BLOCK_MS = 1000
BATCH = 500


def _id_tuple(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class CacheReplicator:
    def __init__(self, conn: Connection, cache: Any, *, replica: str, cursor_path: Path,
                 on_lag: Callable[[float], None] | None = None,
                 on_dropped: Callable[[int], None] | None = None) -> None:
        self.conn = conn
        self.cache = cache
        self.replica = replica.encode()
        self.cfg = conn.config
        self.stream = conn.key("cache", "log")
        self.snap_key = conn.key("cache", "snapshot")
        self.lock_key = conn.key("cache", "snapshot", "lock")
        self.cursor_path = cursor_path
        self.cursor = self._read_cursor()
        self._on_lag = on_lag
        self._on_dropped = on_dropped
        self._out: deque[tuple[bytes, bytes]] = deque()
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.caught_up = threading.Event()  # the first read of the stream (and snapshot) is applied
        self.applied = 0
        self.published = 0
        self.dropped = 0
        self._since_snapshot = 0
        self._cursor_saved = 0.0
        # The consumer blocks on XREAD: its own client, with a socket deadline beyond the block time.
        timeout = self.cfg.timeout_ms / 1000.0
        self._reader = redis.Redis.from_url(self.cfg.url, socket_timeout=BLOCK_MS / 1000.0 + max(1.0, timeout),
                                            socket_connect_timeout=timeout, max_connections=2)
        conn.on_up(self._wake)

    # ------------------------------------------------------------------------------------------ listener
    def inserted(self, items: Sequence[tuple[Entry, np.ndarray | None]]) -> None:
        body = [(msgspec.structs.replace(e, hits=0, last_hit=0.0), None if v is None else
                 np.ascontiguousarray(v, np.float32).tobytes()) for e, v in items]
        self._queue(b"add", _enc.encode(body))

    def deleted(self, entries: Sequence[Entry]) -> None:
        self._queue(b"del", _enc.encode([(e.exact_key, e.created) for e in entries]))

    def purged(self, namespace: str) -> None:
        self._queue(b"purge", namespace.encode("utf-8", "surrogatepass"))

    def _queue(self, kind: bytes, body: bytes) -> None:
        with self._cv:
            if len(self._out) >= self.cfg.stream_maxlen:  # Redis down for long: the oldest change goes
                self._out.popleft()
                self.dropped += 1
                if self._on_dropped is not None:
                    self._on_dropped(1)
            self._out.append((kind, body))
            self._cv.notify()

    @property
    def pending(self) -> int:
        """Changes not yet sent to Redis."""
        return len(self._out)

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    # ------------------------------------------------------------------------------------------ threads
    def start(self) -> None:
        for name, target in (("publish", self._publish_loop), ("consume", self._consume_loop)):
            t = threading.Thread(target=target, name=f"thrifty-replication-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        self._stop.set()
        self._wake()
        for t in self._threads:
            t.join(timeout=BLOCK_MS / 1000.0 + 5)
        self._threads = []
        self._flush_remaining()
        self._save_cursor(force=True)
        self._reader.close()

    def _flush_remaining(self) -> None:
        if self._out and self.conn.up:
            self._send(list(self._out))
            self._out.clear()

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                while not self._stop.is_set() and (not self._out or not self.conn.up):
                    self._cv.wait(timeout=self.cfg.retry_s)
                batch = [self._out.popleft() for _ in range(min(len(self._out), BATCH))]
            try:
                sent = not batch or self._send(batch)
            except Exception as exc:  # never let the thread die: a batch Redis refused is dropped, and said
                log.warning("state: cache replication batch of %d not published: %s", len(batch), exc)
                continue
            if not sent:
                with self._cv:
                    self._out.extendleft(reversed(batch))

    def _send(self, batch: list[tuple[bytes, bytes]]) -> bool:
        def xadd_all() -> Any:
            pipe = self.conn.sync.pipeline(transaction=False)
            for kind, body in batch:
                pipe.xadd(self.stream, {b"o": self.replica, b"k": kind, b"d": body},
                          maxlen=self.cfg.stream_maxlen, approximate=True)
            return pipe.execute()

        ok, _ = self.conn.call("cache replication publish", xadd_all)
        if ok:
            self.published += len(batch)
        return ok

    def _consume_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.caught_up.is_set():
                    self._join()
                    self.caught_up.set()
                got: Any = self._reader.xread({self.stream: self.cursor or "0"}, count=BATCH, block=BLOCK_MS)
            except ERRORS as exc:
                self.conn.failed(exc, "cache replication read")
                self._stop.wait(self.cfg.retry_s)
                continue
            except Exception as exc:  # a snapshot this cache refused: read the stream from its start instead
                log.warning("state: cache catch-up failed (%s); reading the stream from its start", exc)
                self.cursor = self.cursor or "0"
                self.caught_up.set()
                continue
            for _, messages in got or ():
                try:
                    self._apply(messages)
                except Exception as exc:  # a write this cache refused (full, bad vector): skip it, keep going
                    log.warning("state: replicated cache changes not applied: %s", exc)
                    self.cursor = messages[-1][0].decode()
            try:
                self._save_cursor()
                self._maybe_snapshot()
            except Exception as exc:
                log.warning("state: replication bookkeeping failed: %s", exc)

    # ------------------------------------------------------------------------------------------ apply
    def _apply(self, messages: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        adds: list[tuple[Entry, np.ndarray | None]] = []
        now_ms = time.time() * 1000
        for mid, fields in messages:
            self._since_snapshot += 1
            if fields.get(b"o") == self.replica:
                continue
            kind, body = fields.get(b"k"), fields.get(b"d", b"")
            try:
                if kind == b"add":
                    adds += [(e, None if v is None else np.frombuffer(v, np.float32)) for e, v in _add_dec.decode(body)]
                else:
                    self._flush(adds)
                    adds = []
                    if kind == b"del":
                        self.cache.apply_replicated(deletes=_del_dec.decode(body))
                    elif kind == b"purge":
                        self.cache.apply_replicated(purges=[body.decode("utf-8", "surrogatepass")])
            except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
                log.warning("state: skipped an unreadable cache replication message %s: %s", mid, exc)
            self.applied += 1
            if self._on_lag is not None:
                self._on_lag(max(0.0, now_ms - _id_tuple(mid.decode())[0]) / 1000.0)
        self._flush(adds)
        if messages:
            self.cursor = messages[-1][0].decode()

    def _flush(self, adds: list[tuple[Entry, np.ndarray | None]]) -> None:
        if adds:
            self.cache.apply_replicated(adds=adds)

    # ------------------------------------------------------------------------------------------ cursor
    def _read_cursor(self) -> str | None:
        try:
            text = self.cursor_path.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            _id_tuple(text)
        except ValueError:
            return None
        return text

    def _save_cursor(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.cursor is None or (not force and now - self._cursor_saved < 1.0):
            return
        self._cursor_saved = now
        tmp = self.cursor_path.with_suffix(".tmp")
        tmp.write_text(self.cursor)
        tmp.replace(self.cursor_path)

    # ------------------------------------------------------------------------------------------ snapshots
    def _join(self) -> None:
        """Where this replica starts reading: its saved position, or the latest snapshot's when it has none
        or the stream was trimmed past it."""
        first: Any = self._reader.xrange(self.stream, count=1)
        first_id = first[0][0].decode() if first else None
        gap = self.cursor is None or (first_id is not None and _id_tuple(self.cursor) < _id_tuple(first_id)
                                      and self.cursor != "0")
        if not gap:
            return
        snap: Any = self._reader.hgetall(self.snap_key)
        if snap.get(b"id") and snap.get(b"data"):
            from cache.transfer import import_jsonl

            n = import_jsonl(self.cache, io.BytesIO(zlib.decompress(snap[b"data"])))
            self.cursor = snap[b"id"].decode()
            log.warning("state: cache caught up from a snapshot of %d entries (stream position %s)", n, self.cursor)
        elif self.cursor is None:
            self.cursor = "0"
        else:
            log.warning("state: the cache stream was trimmed past this replica's position and no snapshot "
                        "exists: entries written meanwhile are missing here")
            self.cursor = "0"

    def _maybe_snapshot(self) -> None:
        if self._since_snapshot < self.cfg.snapshot_every or self.cursor is None:
            return
        self._since_snapshot = 0
        ok, mine = self.conn.call("cache snapshot lease", self.conn.sync.set, self.lock_key, self.replica,
                                  nx=True, px=60_000)
        if not ok or not mine:
            return
        try:
            self.write_snapshot()
        finally:
            self.conn.call("cache snapshot lease", self.conn.sync.delete, self.lock_key)

    def write_snapshot(self) -> int:
        """Export this replica's cache (as of the stream position it has applied) to Redis; bytes written."""
        from cache.transfer import export_jsonl

        position = self.cursor
        buf = io.BytesIO()
        export_jsonl(self.cache, buf)
        if buf.tell() > self.cfg.snapshot_max_bytes:
            log.warning("state: cache snapshot not written (%d bytes > snapshot_max_bytes)", buf.tell())
            return 0
        data = zlib.compress(buf.getvalue(), 3)
        ok, _ = self.conn.call("cache snapshot", self.conn.sync.hset, self.snap_key,
                               mapping={"id": position or "0", "data": data})
        return len(data) if ok else 0
