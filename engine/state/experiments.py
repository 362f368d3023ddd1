"""Experiment state shared by every replica: a promotion, rollback, stop, weight change, guard-rail stop or
new experiment made on one replica reaches the others within about a second.

Each experiment's state (and, for one created through the admin API, its definition) is one field of the
hash ``<prefix>:experiments``; a Lua script replaces it only with a newer one (``ExperimentState.updated``),
so each experiment converges on its latest change whichever replica made it. A replica publishes after
each change it makes (off the request path: guard-rail stops happen while serving) and reads the hash once
a second, taking into its own ``experiments.json`` every experiment whose shared state is newer than its
own. A replica that starts later takes them all at its first read. While Redis is down each replica keeps
its own state; its changes are published again when Redis answers.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from engine.state._redis import Connection

log = logging.getLogger("thrifty.state")

# KEYS[1]: the hash; ARGV: name, updated, document. Replaces the field only with a newer state.
_SET_NEWER = """
local old = redis.call('HGET', KEYS[1] .. ':updated', ARGV[1])
if old and tonumber(old) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[1] .. ':updated', ARGV[1], ARGV[2])
return 1
"""


class SharedExperiments:
    def __init__(self, conn: Connection, *, replica: str) -> None:
        self.conn = conn
        self.replica = replica
        self.key = conn.key("experiments")
        self._set_newer = conn.sync.register_script(_SET_NEWER)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="thrifty-experiments")
        self._unsent: dict[str, tuple[float, bytes]] = {}  # name -> (updated, document) Redis has not taken
        self._lock = threading.Lock()
        conn.on_up(self._resend)

    def publish(self, name: str, updated: float, document: bytes) -> None:
        """Offer this replica's new state of ``name`` (sent on a thread of its own)."""
        with self._lock:
            self._unsent[name] = (updated, document)
        self._pool.submit(self._send, name)

    def _send(self, name: str) -> None:
        with self._lock:
            item = self._unsent.get(name)
        if item is None:
            return
        ok, _ = self.conn.call("experiments publish", self._set_newer, keys=[self.key],
                               args=[name, repr(item[0]), item[1]])
        if ok:
            with self._lock:
                if self._unsent.get(name) == item:
                    del self._unsent[name]

    def _resend(self) -> None:
        with self._lock:
            names = list(self._unsent)
        for name in names:
            self._pool.submit(self._send, name)

    def read(self) -> dict[str, bytes] | None:
        """Every experiment's shared document, or None while Redis is down."""
        ok, got = self.conn.call("experiments read", self.conn.sync.hgetall, self.key)
        if not ok:
            return None
        return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in got.items()}

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
