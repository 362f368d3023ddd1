"""Circuit state shared by every replica: a deployment one replica sees failing opens for all.

A breaker that opens or closes (``router.breaker``) tells :class:`SharedCircuits`, which publishes the
change on the channel ``<prefix>:circuits`` and keeps an open circuit in the key
``<prefix>:circuit:<deployment>`` (expiring with the cool-down) for replicas that start later. A thread
on each replica subscribes and applies the other replicas' changes to its own breakers, on the event loop.
When the cool-down ends, the half-open probe is claimed with ``SET NX`` (a lease as long as a request may
last): one replica probes, the others keep refusing until its verdict arrives as an open or a close.
While Redis is down every replica decides alone, as without shared state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from engine.state._redis import ERRORS, Connection

log = logging.getLogger("thrifty.state")


class _Change(msgspec.Struct, array_like=True):
    origin: str
    deployment: str
    state: str  # "open" | "closed"
    at: float  # wall-clock time of the change


_enc, _dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(_Change)


class SharedCircuits:
    def __init__(self, conn: Connection, *, replica: str, probe_ttl_s: float) -> None:
        self.conn = conn
        self.replica = replica
        self.channel = conn.key("circuits")
        self.probe_ttl_ms = int(probe_ttl_s * 1000)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="thrifty-circuits")
        self._breakers: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.received = 0

    # ------------------------------------------------------------------------------------------ breaker side
    def opened(self, deployment: str, cooldown_s: float) -> None:
        change = _Change(self.replica, deployment, "open", time.time())
        self._pool.submit(self._publish, change, int(cooldown_s * 1000))

    def closed(self, deployment: str) -> None:
        self._pool.submit(self._publish, _Change(self.replica, deployment, "closed", time.time()), 0)

    def claim_probe(self, deployment: str) -> bool:
        """May this replica send the half-open probe? Yes when it wins the lease, or when Redis is down."""
        ok, won = self.conn.call("circuit probe", self.conn.sync.set, self.conn.key("circuit", deployment, "probe"),
                                 self.replica, nx=True, px=self.probe_ttl_ms)
        return bool(won) if ok else True

    def _publish(self, change: _Change, ttl_ms: int) -> None:
        key = self.conn.key("circuit", change.deployment)

        def send() -> Any:
            pipe = self.conn.sync.pipeline(transaction=False)
            if change.state == "open":
                pipe.set(key, _enc.encode(change), px=max(ttl_ms, 1))
            else:
                pipe.delete(key, key + ":probe")
            pipe.publish(self.channel, _enc.encode(change))
            return pipe.execute()

        self.conn.call("circuit publish", send)

    # ------------------------------------------------------------------------------------------ subscriber side
    def start(self, breakers: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self._breakers, self._loop = breakers, loop
        breakers.shared = self
        self._thread = threading.Thread(target=self._listen, name="thrifty-circuits-sub", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.conn.sync.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self._load_open()  # circuits opened before this replica (re)subscribed
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None and msg.get("type") == "message":
                        self._received(msg["data"])
            except ERRORS as exc:
                self.conn.failed(exc, "circuit subscription")
                self._stop.wait(self.conn.config.retry_s)
            except Exception as exc:  # never let the subscription die
                log.warning("state: circuit subscription error: %s", exc)
                self._stop.wait(self.conn.config.retry_s)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(*ERRORS):
                        pubsub.close()

    def _load_open(self) -> None:
        for key in self.conn.sync.scan_iter(match=self.conn.key("circuit", "*"), count=500):
            if key.endswith(b":probe"):
                continue
            raw: Any = self.conn.sync.get(key)
            if raw is not None:
                self._received(raw)

    def _received(self, raw: bytes) -> None:
        try:
            change = _dec.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if change.origin == self.replica:
            return
        self.received += 1
        age = max(0.0, time.time() - change.at)
        apply = self._breakers.apply_remote
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(apply, change.deployment, change.state, age)
        else:
            apply(change.deployment, change.state, age)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._pool.shutdown(wait=True)
