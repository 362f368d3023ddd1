"""The provider contract and the HTTP plumbing every wire format shares.

A provider has one method, ``send``: it translates thrifty's OpenAI-shaped request to its wire format,
makes ONE call (no retries: dispatch owns those) and returns a ``ChatResponse`` or, when
``request.stream``, a ``ChunkStream`` that is already past the status line (so a 429 or 500 surfaces
from ``send``, before any chunk). httpx errors are mapped to ``router.errors`` here, at the boundary.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx
import msgspec

from models.schema import Route
from router.deadline import Deadline
from router.errors import (
    AuthError,
    BadRequest,
    ConnectFailed,
    ContextLengthExceeded,
    MalformedResponse,
    NotFound,
    ProviderError,
    RateLimited,
    ServerError,
    UpstreamTimeout,
    redact,
)
from router.providers.config import ProviderConfig, route_headers, vendor_keys
from router.types import ChatChunk, ChatRequest, ChatResponse

log = logging.getLogger("thrifty.router")
# The W3C ``traceparent`` the next upstream call carries (the engine's tracing sets it per attempt, in the
# request's own context); None: no header. A ContextVar, so one shared client serves every request.
TRACEPARENT: ContextVar[str | None] = ContextVar("thrifty_traceparent", default=None)
# The caller's W3C ``tracestate``, sent beside the traceparent (read only when a traceparent is sent).
TRACESTATE: ContextVar[str | None] = ContextVar("thrifty_tracestate", default=None)
MAX_BODY_BYTES = 16 * 1024 * 1024  # a bigger answer is a broken upstream, not an answer
MAX_EVENT_BYTES = 1024 * 1024
_CONTEXT_RE = re.compile(
    r"context[ _-]?length|context window|maximum context|prompt is too long|too many tokens|"
    r"input is too long|reduce the length",
    re.IGNORECASE,
)


class BadEvents:
    """Undecodable SSE events skipped in one stream, up to ``limit``; one more fails the stream."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0


class ChunkStream:
    """An async iterator of ``ChatChunk``; ``aclose`` releases the connection early."""

    __slots__ = ("_gen", "bad_events")

    def __init__(self, gen: AsyncGenerator[ChatChunk, None], bad_events: BadEvents | None = None) -> None:
        self._gen = gen
        self.bad_events = bad_events  # undecodable events skipped so far (dispatch reports them)

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> ChatChunk:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        await self._gen.aclose()


@runtime_checkable
class Provider(Protocol):
    name: str
    config: ProviderConfig

    async def send(self, request: ChatRequest, route: Route, deadline: Deadline) -> ChatResponse | ChunkStream:
        ...

    async def aclose(self) -> None:
        ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import time

    return max(0.0, when.timestamp() - time.time())


_STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: BadRequest,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    408: ServerError,
    409: ServerError,
    413: BadRequest,
    422: BadRequest,
    429: RateLimited,
}


def error_message(body: bytes, clean: Callable[[str], str] | None = None) -> str:
    """The human part of an upstream error body (OpenAI, Anthropic and Cortex shapes), shortened.
    ``clean`` (the provider's redaction) runs on the whole body *before* anything is cut: a secret that
    straddled a cut would leave its prefix behind, out of reach of a later redaction."""
    text = body.decode("utf-8", "replace")
    if clean is not None:
        text = clean(text)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return text.strip()[:500] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg") or err.get("detail")
            if msg:
                return str(msg)[:500]
        elif isinstance(err, str):
            return err[:500]
        if "message" in data:
            return str(data["message"])[:500]
    return text.strip()[:500]


def error_meta(body: bytes, clean: Callable[[str], str] = str) -> dict[str, str]:
    """The upstream error's ``code``, ``type`` and ``param`` where its body has them (OpenAI and Anthropic
    shapes), as short strings: passed back to the caller so that e.g. a content-policy 400 keeps its code.
    Each is ``clean``-ed before it is cut, as in :func:`error_message`."""
    try:
        data = json.loads(body[:4000].decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return {}
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return {}
    return {k: clean(str(err[k]))[:200] for k in ("code", "type", "param") if isinstance(err.get(k), str | int)}


class HTTPProvider:
    """Shared HTTP machinery: one lazily created, pooled ``httpx.AsyncClient`` per provider."""

    kind: ClassVar[str] = ""
    __slots__ = ("_client", "_headers", "_parsed_url", "_route_headers", "_secrets", "_url", "config", "name")

    def __init__(self, config: ProviderConfig, *, url: str, headers: dict[str, str], secrets: tuple[str, ...]):
        self.config = config
        self.name = config.name
        self._url = url
        self._parsed_url = httpx.URL(url)  # parsed once: build_request would parse it on every call
        self._headers = {"content-type": "application/json", **headers}
        self._secrets = secrets
        self._client: httpx.AsyncClient | None = None
        self._route_headers: dict[str, dict[str, str]] = {}  # route model -> extra headers (bind_vendors)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, url={self._url!r})"

    def _new_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(
            max_connections=self.config.max_connections, max_keepalive_connections=self.config.max_connections
        )
        transport: httpx.AsyncBaseTransport
        if self.config.transport == "aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport(limits=limits)
        else:
            transport = httpx.AsyncHTTPTransport(limits=limits)
        return httpx.AsyncClient(transport=transport, headers=self._headers, timeout=None)

    @property
    def client(self) -> httpx.AsyncClient:
        client = self._client
        if client is None:
            client = self._client = self._new_client()
        return client

    def bind_vendors(self, vendors: Mapping[str, str]) -> None:
        """A gateway preset's per-vendor headers (Portkey: x-portkey-provider and the vendor's key), from
        the catalog's ``route model -> vendor`` for this provider: built once, looked up per request."""
        keys = vendor_keys(self.config)
        self._secrets = (*self._secrets, *keys.values())
        self._route_headers = {model: h for model, vendor in vendors.items()
                               if (h := route_headers(self.config, vendor, keys, self._headers))}

    def warm(self) -> None:
        """Build the pooled client now (imports, TLS context), not on the first request."""
        _ = self.client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _timeout(self, deadline: Deadline) -> httpx.Timeout:
        t = self.config.timeouts
        connect = deadline.cap(t.connect)
        read = deadline.cap(t.read)
        return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)

    def is_context_error(self, status: int, message: str) -> bool:
        return status in (400, 413, 422) and _CONTEXT_RE.search(message) is not None

    async def post(self, body: bytes, deadline: Deadline, *, url: str | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        """POST and return the response with its status checked; the body is not yet read."""
        traceparent = TRACEPARENT.get()
        if traceparent is not None:
            headers = {**headers, "traceparent": traceparent} if headers else {"traceparent": traceparent}
            tracestate = TRACESTATE.get()
            if tracestate is not None:
                headers["tracestate"] = tracestate
        request = self.client.build_request(
            "POST", url or self._parsed_url, content=body, headers=headers, timeout=self._timeout(deadline)
        )
        try:
            response = await self.client.send(request, stream=True)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # never reached the model: a connect error
            raise ConnectFailed(self._clean(f"{type(exc).__name__}: {exc}"), provider=self.name) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(self._clean(f"{type(exc).__name__}: {exc}"), provider=self.name) from exc
        except httpx.HTTPError as exc:
            raise ConnectFailed(self._clean(f"{type(exc).__name__}: {exc}"), provider=self.name) from exc
        if response.status_code >= 400:
            await self._raise_for_status(response)
        return response

    async def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        try:
            body = await self._read_limited(response, 64 * 1024, truncate=True)
        except ProviderError:
            body = b""
        finally:
            await response.aclose()
        message = error_message(body, self._clean)
        headers = response.headers
        retry_after = parse_retry_after(headers.get("retry-after"))
        if retry_after is None and "retry-after-ms" in headers:
            try:
                retry_after = float(headers["retry-after-ms"]) / 1000
            except ValueError:
                retry_after = None
        meta = error_meta(body, self._clean) if status < 500 else {}
        code, kind, param = meta.get("code"), meta.get("type"), meta.get("param")
        if self.is_context_error(status, message):
            raise ContextLengthExceeded(message, provider=self.name, status=status, code=code, type=kind, param=param)
        cls = _STATUS_ERRORS.get(status) or (ServerError if status >= 500 else BadRequest)
        raise cls(message, provider=self.name, status=status, retry_after=retry_after, code=code, type=kind,
                  param=param)

    async def _read_limited(self, response: httpx.Response, limit: int, *, truncate: bool = False) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit and not truncate:
            await response.aclose()
            raise MalformedResponse(f"body of {declared} bytes exceeds the {limit}-byte limit", provider=self.name)
        parts: list[bytes] = []
        size = 0
        try:
            async for part in response.aiter_bytes():
                size += len(part)
                parts.append(part)
                if size > limit:
                    if truncate:
                        break
                    raise MalformedResponse(f"body exceeds the {limit}-byte limit", provider=self.name)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"reading the body: {exc}", provider=self.name) from exc
        except httpx.HTTPError as exc:
            raise ConnectFailed(self._clean(f"reading the body: {type(exc).__name__}: {exc}"), provider=self.name) from exc
        return b"".join(parts)

    async def read_json(self, response: httpx.Response, decode: Callable[[bytes], Any]) -> Any:
        try:
            ctype = response.headers.get("content-type", "")
            if "json" not in ctype:
                raise MalformedResponse(f"expected JSON, got content-type {ctype!r}", provider=self.name)
            body = await self._read_limited(response, MAX_BODY_BYTES)
        finally:
            await response.aclose()
        try:
            return decode(body)
        except (msgspec.MsgspecError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise MalformedResponse(f"undecodable response body: {exc}", provider=self.name) from exc

    async def check_event_stream(self, response: httpx.Response) -> None:
        """Refuse an answer that is not an event stream, releasing its connection first."""
        ctype = response.headers.get("content-type", "")
        if "text/event-stream" not in ctype:
            await response.aclose()
            raise MalformedResponse(f"expected text/event-stream, got content-type {ctype!r}", provider=self.name)

    # The wire formats that share ``send`` supply these three: encoder, JSON decoder, stream translator.
    @staticmethod
    def decode_response(body: bytes) -> ChatResponse:
        raise NotImplementedError

    def encode(self, request: ChatRequest, route: Route) -> bytes:
        raise NotImplementedError

    def _chunks(self, response: httpx.Response, bad: BadEvents) -> AsyncGenerator[ChatChunk, None]:
        raise NotImplementedError

    async def send(self, request: ChatRequest, route: Route, deadline: Deadline) -> ChatResponse | ChunkStream:
        """POST the encoded request; an SSE stream of chunks or one decoded answer."""
        response = await self.post(self.encode(request, route), deadline,
                                   headers=self._route_headers.get(route.model))
        if request.stream:
            await self.check_event_stream(response)
            bad = BadEvents(self.config.retries.max_bad_events)
            return ChunkStream(self._chunks(response, bad), bad)
        result: ChatResponse = await self.read_json(response, self.decode_response)
        return result

    async def sse_data(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """The ``data:`` payloads of an SSE body, one per event; transport failures mapped."""
        buffer = b""
        data: list[bytes] = []
        try:
            async for part in response.aiter_bytes():
                buffer += part
                if len(buffer) > MAX_EVENT_BYTES and b"\n" not in buffer:
                    raise MalformedResponse("an SSE event exceeds the 1 MiB limit", provider=self.name)
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    line = line.rstrip(b"\r")
                    if not line:
                        if data:
                            yield b"\n".join(data)
                            data = []
                    elif line.startswith(b"data:"):
                        data.append(line[5:].lstrip(b" "))
            if data:
                yield b"\n".join(data)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"stream read: {exc}", provider=self.name) from exc
        except httpx.HTTPError as exc:
            raise ConnectFailed(self._clean(f"stream broken: {type(exc).__name__}: {exc}"), provider=self.name) from exc

    def stream_error(self, message: str, meta: dict[str, str]) -> ProviderError:
        """An error event inside a stream: the request's own (an invalid request, a content filter) says
        nothing about the deployment's health and is not continued elsewhere; anything else is the
        deployment's (overloaded, internal)."""
        kind, code = meta.get("type") or "", meta.get("code") or ""
        own = kind == "invalid_request_error" or "content" in code
        cls: type[ProviderError] = BadRequest if own else ServerError
        return cls(message, provider=self.name, code=meta.get("code"), type=meta.get("type"), param=meta.get("param"))

    def skip_bad_event(self, bad: BadEvents, exc: Exception) -> None:
        """Count one undecodable event (clients skip them too); past the stream's limit, fail the stream."""
        bad.count += 1
        if bad.count > bad.limit:
            raise MalformedResponse(f"undecodable stream event ({bad.count} in this stream): {exc}",
                                    provider=self.name) from exc
        log.warning("provider %s: skipped undecodable stream event %d of at most %d: %s",
                    self.name, bad.count, bad.limit, exc)

    def _clean(self, text: str) -> str:
        return redact(text, self._secrets)
