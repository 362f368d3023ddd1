"""uvicorn's httptools protocol with the limits it lacks: header count and size, and read timeouts.

uvicorn on httptools accepts any number of headers of any size and waits for ever for a request head or
a stalled body (only idle keep-alive connections time out). :class:`GuardedHttpTools` adds, from the
app's ``server:`` config (``app.state.limits``):

* ``max_header_count`` / ``max_header_bytes`` -> 431 and the connection closed, counted as bytes arrive,
  so an 8 MB header is refused at 64 KB, not buffered;
* ``header_timeout_s``: the whole head must arrive within it (slowloris) -> 408, or a silent close for
  a connection that never sent a byte;
* ``body_timeout_s``: the longest silence while a body is being sent -> 408;
* ``idle_timeout_s``: uvicorn's keep-alive timeout.

Timers are armed only when a head or a body spans more than one read, so a request that arrives in one
packet (nearly all of them) costs no timer at all. ``thrifty serve`` and the tests' ``LiveServer`` pass
``http="engine.http_limits:GuardedHttpTools"``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_DEFAULTS: Any = None
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_json = msgspec.json.Encoder()


def _limits_of(config: Any) -> Any:
    """The ``server:`` config of the app uvicorn serves (through any middleware wrapping it)."""
    app = getattr(config, "loaded_app", None)
    for _ in range(10):
        if app is None:
            break
        state = getattr(app, "state", None)
        limits = getattr(state, "limits", None) if state is not None else None
        if limits is not None:
            return limits
        app = getattr(app, "app", None)
    global _DEFAULTS
    if _DEFAULTS is None:
        from engine.config import ServerConfig

        _DEFAULTS = ServerConfig()
    return _DEFAULTS


def error_bytes(status: int, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 response with an OpenAI-shaped error body, closing the connection."""
    body = _json.encode({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}})
    return b"".join([
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
        b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body),
        body,
    ])


class _Refused(Exception):
    pass


class GuardedHttpTools(HttpToolsProtocol):
    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = _limits_of(config)
        self.timeout_keep_alive = self.limits.idle_timeout_s
        self._head_pending = True  # between the start of a request (or the connection) and its last header
        self._body_pending = False
        self._head_bytes = 0
        self._header_count = 0
        self._header_bytes = 0
        self._refusal: tuple[int, str, str] | None = None
        self._timer: asyncio.TimerHandle | None = None

    # -- timers ------------------------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a response still being written: the client waits on us, not we on
            # it. The clock restarts; the answer in flight is never cut by a 408 written across it.
            self._arm(self.limits.header_timeout_s, self._head_timed_out)
            return
        if self._head_bytes == 0:
            self.transport.close()  # never sent a byte of a request: nothing to answer
            return
        self._refuse(408, f"request headers not received within {self.limits.header_timeout_s:g} s",
                     "request_timeout")

    def _body_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # uvicorn stopped reading (a queued pipelined request, a full buffer)
            self._arm(self.limits.body_timeout_s, self._body_timed_out)
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self.transport.write(error_bytes(
                408, f"request body stalled for {self.limits.body_timeout_s:g} s", "request_timeout"))
        self.transport.close()  # connection_lost tells the app (http.disconnect)

    def _refuse(self, status: int, message: str, code: str) -> None:
        self._disarm()
        self.transport.write(error_bytes(status, message, code))
        self.transport.close()

    # -- protocol ----------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._disarm()
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            status, message, code = self._refusal or (400, "malformed HTTP request", "bad_request")
            self._refuse(status, message, code)
            return
        if self.transport.is_closing():
            self._disarm()
        elif self._head_pending:
            # Counted per read, so a single endless header is refused once it passes the limit.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(431, f"request headers exceed {self.limits.max_header_bytes} bytes", "headers_too_large")
            elif self._timer is None:
                self._arm(self.limits.header_timeout_s, self._head_timed_out)
        elif self._body_pending:
            self._arm(self.limits.body_timeout_s, self._body_timed_out)  # each read restarts the stall clock
        elif self._timer is not None:
            self._disarm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_pending, self._body_pending = True, False
        self._head_bytes = self._header_count = self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(len(url), headers=0)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, headers=1)
        super().on_header(name, value)

    def _count(self, size: int, headers: int) -> None:
        self._header_count += headers
        self._header_bytes += size
        lim = self.limits
        if self._header_count > lim.max_header_count:
            self._refusal = (431, f"more than {lim.max_header_count} request headers", "too_many_headers")
            raise _Refused
        if self._header_bytes > lim.max_header_bytes:
            self._refusal = (431, f"request headers exceed {lim.max_header_bytes} bytes", "headers_too_large")
            raise _Refused

    def on_headers_complete(self) -> None:
        self._head_pending, self._body_pending = False, True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._body_pending = False
        super().on_message_complete()
