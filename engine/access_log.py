"""The access log: one line per HTTP request, as text or JSON, written off the request path.

An ASGI middleware times each request, sees its status, and reads what the handler noted about it
(:func:`note`: the request id, the tenant, and the pipeline's :class:`~engine.types.Meta`). When the
response has been sent it puts one tuple on a queue; a daemon thread wakes every 50 ms, formats what
was queued and hands the lines to the ``thrifty.access`` logger. The event loop pays for a tuple and a ``deque.append``, nothing more.

A line never holds a key, a prompt or an answer: the path (without its query string), the status, the
tenant's name, the catalog model and provider, the cache outcome, the cost, the latencies and the
request id. Values that come from the client (path, request id) are escaped, so a line stays one line.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

import msgspec

Format = Literal["text", "json", "off"]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SCOPE_KEY = "thrifty.access"
_STOP = object()
_DRAIN_S = 0.05  # how often the writer thread wakes to write what was queued
_json = msgspec.json.Encoder()
# Control characters and spaces would split a text line or fake a field: escape them.
_UNSAFE = {i: f"\\x{i:02x}" for i in (*range(0x21), 0x7F)}
_UNSAFE[ord('"')] = '\\"'
_UNSAFE[ord("\\")] = "\\\\"

logger = logging.getLogger("thrifty.access")


class Entry(msgspec.Struct, omit_defaults=False):
    """One request, as the JSON format writes it (the text format writes the same fields)."""

    ts: str
    method: str
    path: str
    status: int
    tenant: str | None
    model: str | None
    provider: str | None
    cache: str | None
    cost_usd: float | None
    latency_ms: float
    overhead_ms: float | None
    request_id: str | None


class Notes:
    """What a handler tells the access log about its request (set through :func:`note`)."""

    __slots__ = ("meta", "request_id", "tenant")

    def __init__(self) -> None:
        self.meta: Any = None
        self.tenant: str | None = None
        self.request_id: str | None = None


def note(scope: Scope, *, meta: Any = None, tenant: str | None = None, request_id: str | None = None) -> None:
    """Record a request's tenant, request id or Meta for its access-log line (a no-op when off)."""
    notes = scope.get(_SCOPE_KEY)
    if notes is None:
        return
    if meta is not None:
        notes.meta = meta
    if tenant is not None:
        notes.tenant = tenant
    if request_id is not None:
        notes.request_id = request_id


def _text_value(v: object) -> str:
    if v is None or v == "":
        return "-"
    return str(v).translate(_UNSAFE)


def format_text(e: Entry) -> str:
    cost = "-" if e.cost_usd is None else f"{e.cost_usd:.8f}"
    overhead = "-" if e.overhead_ms is None else f"{e.overhead_ms:.3f}"
    return (f"{e.ts} {_text_value(e.method)} {_text_value(e.path)} {e.status} tenant={_text_value(e.tenant)} "
            f"model={_text_value(e.model)} provider={_text_value(e.provider)} cache={_text_value(e.cache)} "
            f"cost_usd={cost} latency_ms={e.latency_ms:.3f} overhead_ms={overhead} "
            f"request_id={_text_value(e.request_id)}")


def format_json(e: Entry) -> str:
    return _json.encode(e).decode()


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _entry(raw: tuple[Any, ...]) -> Entry:
    ts, method, path, status, latency_ns, notes = raw
    meta = notes.meta
    return Entry(
        ts=_iso(ts), method=method, path=path, status=status, tenant=notes.tenant,
        model=getattr(meta, "model", None), provider=getattr(meta, "provider", None),
        cache=getattr(meta, "cache", None),
        cost_usd=getattr(meta, "cost_usd", None), latency_ms=latency_ns / 1e6,
        overhead_ms=getattr(meta, "overhead_ms", None),
        request_id=notes.request_id or getattr(meta, "request_id", None),
    )


class AccessLog:
    """The queue and its writer thread. ``start()`` on app start-up, ``close()`` on shutdown."""

    def __init__(self, fmt: Format) -> None:
        self.format = fmt
        self._fmt = format_json if fmt == "json" else format_text
        # A deque drained on a timer, as the ledger's: appending wakes no thread, so the event loop never
        # hands the GIL to the writer in the middle of the next request.
        self._q: deque[Any] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.format != "off"

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        if not logger.handlers:
            # A line of its own: the root handler's "time level name:" prefix would break JSON lines.
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        self._thread = threading.Thread(target=self._run, name="thrifty-access-log", daemon=True)
        self._thread.start()

    def put(self, raw: tuple[Any, ...]) -> None:
        if self._thread is not None:  # not started (an app run without its lifespan): nothing would drain it
            self._q.append(raw)

    def _run(self) -> None:
        while True:
            self._wake.wait(_DRAIN_S)
            self._wake.clear()
            while self._q:
                raw = self._q.popleft()
                if raw is _STOP:
                    return
                try:
                    logger.info("%s", self._fmt(_entry(raw)))
                except Exception:  # a malformed entry must not stop the log for every later request
                    logging.getLogger("thrifty").exception("access log: could not write an entry")

    def close(self) -> None:
        """Write every queued line, then stop the thread."""
        if self._thread is None:
            return
        self._q.append(_STOP)
        self._wake.set()
        self._thread.join(timeout=5)
        self._thread = None


class AccessLogMiddleware:
    """Pure ASGI (no per-request Request object): times the request and queues its line once sent."""

    def __init__(self, app: ASGIApp, log: AccessLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter_ns()
        notes = scope[_SCOPE_KEY] = Notes()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # A stream's handler returns only after its last chunk: its Meta is final here.
            self.log.put((time.time(), scope["method"], scope["path"], status or 500,
                          time.perf_counter_ns() - t0, notes))


__all__ = ["AccessLog", "AccessLogMiddleware", "Entry", "Format", "format_json", "format_text", "note"]
