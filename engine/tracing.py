"""OpenTelemetry traces of requests (issue 19), exported over OTLP; off unless ``tracing.enabled``.

One trace per request: a SERVER span for the request, a child span per pipeline stage (``Meta.stages``:
scope, exact, encode, search, verify, route, budget, dispatch or first_chunk, store), and under the dispatch stage
a CLIENT span per upstream attempt (provider, deployment, status, why it was retried or fell back).

Design: the request path creates no span objects. It keeps what it keeps anyway (stage laps, the
attempts list) plus, per attempt, a start time and a pre-drawn span id; when the request ends,
:meth:`Tracing.end` builds finished spans with explicit start and end times and hands them to a
``BatchSpanProcessor`` (its thread exports them). The attempt's span id is drawn before the upstream call
so that the ``traceparent`` sent upstream names the very span the trace will hold.

Attributes follow the OpenTelemetry GenAI semantic conventions as of semconv 1.37
(``gen_ai.provider.name``, which replaced ``gen_ai.system``; ``gen_ai.input.messages`` /
``gen_ai.output.messages`` for content), plus thrifty's own ``thrifty.*``.

Configuration is the standard ``OTEL_*`` environment: ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``,
``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`` (``http/protobuf``, the default, or ``grpc``),
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER`` (+ ``_ARG``), ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_*``. The SDK is imported only when tracing is on.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from router.dispatch import ON_ATTEMPT
from router.providers.base import TRACEPARENT, TRACESTATE

if TYPE_CHECKING:
    from engine.config import RawConfig
    from engine.doors.embeddings import EmbeddingCall
    from engine.errors import ThriftyError
    from engine.pipeline import Ctx
    from models.schema import Route
    from router.candidate import Candidate
    from router.types import ChatResponse

# The caller's ``traceparent`` and ``tracestate`` headers, set by :class:`TraceparentMiddleware` (installed
# only when on); several ``tracestate`` headers are one list (W3C: joined with commas).
INCOMING: ContextVar[str | None] = ContextVar("thrifty_incoming_traceparent", default=None)
INCOMING_STATE: ContextVar[str | None] = ContextVar("thrifty_incoming_tracestate", default=None)

_NOT_SENT = frozenset({"circuit_open", "skipped", "deadline", "unknown_provider"})
_AFTER_CONTENT = "after content was sent"
_PROTOCOLS = ("http/protobuf", "grpc")
_DRAIN_S = 0.05  # how often ended requests become spans (the batch exporter adds its own delay)
_MAX_QUEUED = 8192  # ended requests awaiting their spans
_EXPORT_BATCH = 64  # spans per OTLP export (default; the SDK's is 512)
log = logging.getLogger("thrifty.tracing")


def parse_traceparent(value: str | None) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a W3C ``traceparent``, or None when absent or malformed
    (the W3C rule: a malformed header starts a new trace, it is not an error)."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    if parts[0] == "ff" or (parts[0] == "00" and len(parts) != 4):
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
        int(parts[0], 16)
    except ValueError:
        return None
    if not trace_id or not span_id or any(c not in "0123456789abcdef" for c in parts[1] + parts[2]):
        return None
    return trace_id, span_id, flags


def _tracestate(value: str | None) -> str | None:
    """The caller's ``tracestate`` to forward: None when absent, empty or too long to be one (W3C: at most
    32 list members of 256 characters; a header that cannot be valid is dropped, not passed on)."""
    if not value or not value.strip() or len(value) > 32 * 257 or any(c in value for c in "\r\n"):
        return None
    return value


def _span_id() -> int:
    return random.getrandbits(64) or 1


class Trace:
    """One sampled request's trace ids and the attempts dispatch started; cheap, no OpenTelemetry object."""

    __slots__ = ("attempts", "operation", "parent_id", "sent", "span_id", "t0", "trace_id", "wall0")

    def __init__(self, trace_id: int, parent_id: int | None, t0: int, operation: str = "chat") -> None:
        self.operation = operation  # gen_ai.operation.name: "chat" or "embeddings"
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.span_id = _span_id()
        self.t0 = t0  # perf_counter_ns of Ctx.t0
        self.wall0 = time.time_ns() - (time.perf_counter_ns() - t0)
        self.sent: list[tuple[int, int, Route, str]] = []  # (span id, perf ns, route, model id) per call
        self.attempts: list[Any] | None = None  # dispatch's Attempt list, once known

    def on_attempt(self, candidate: Candidate) -> None:
        """Called by dispatch right before each upstream call: the call carries this attempt's span."""
        self.on_call(candidate.route, candidate.model.id)

    def on_call(self, route: Route, model_id: str) -> None:
        """Right before an upstream call of ``route`` (serving catalog model ``model_id``)."""
        span_id = _span_id()
        self.sent.append((span_id, time.perf_counter_ns(), route, model_id))
        TRACEPARENT.set(f"00-{self.trace_id:032x}-{span_id:016x}-01")

    def wall(self, perf_ns: int) -> int:
        return self.wall0 + (perf_ns - self.t0)


class TraceparentMiddleware:
    """Pure ASGI: hands the caller's ``traceparent`` (and ``tracestate``) to the engine through
    :data:`INCOMING` (and :data:`INCOMING_STATE`)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            value = state = None
            for name, raw in scope["headers"]:
                if name == b"traceparent":
                    value = raw.decode("latin-1")
                elif name == b"tracestate":
                    state = raw.decode("latin-1") if state is None else f"{state},{raw.decode('latin-1')}"
            INCOMING.set(value)
            INCOMING_STATE.set(state)
        await self.app(scope, receive, send)


def build_tracing(raw: RawConfig) -> Tracing | None:
    """The tracer of a config, or None when tracing is off (nothing is imported then); the standard
    ``OTEL_SDK_DISABLED=true`` turns it off too."""
    if not raw.tracing.enabled or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    try:
        return Tracing(log_content=raw.log_content)
    except ImportError as exc:
        raise RuntimeError(f"tracing.enabled needs OpenTelemetry: pip install 'thrifty[otel]' ({exc})") from exc


class Tracing:
    def __init__(self, *, log_content: bool) -> None:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from engine._tracing_spans import SpanBuilder, sampled

        attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "thrifty"}
        # A provider only to read the sampler and resource the OTEL_* variables describe; spans are made
        # by SpanBuilder and go straight to the batch processor.
        provider = TracerProvider(resource=Resource.create(attrs), shutdown_on_exit=False)
        self.sampler = provider.sampler
        self._sampled = sampled
        # Smaller export batches than the SDK's 512 unless OTEL_BSP_MAX_EXPORT_BATCH_SIZE says otherwise:
        # encoding a batch holds the GIL, and a long hold is a pause for every request in flight.
        batch = None if os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") else _EXPORT_BATCH
        self.processor = BatchSpanProcessor(_exporter(), max_export_batch_size=batch)
        self.log_content = log_content
        self.builder = SpanBuilder(provider.resource, InstrumentationScope("thrifty", "0.1.0"), log_content)
        self._ended: deque[tuple[Any, ...]] = deque(maxlen=_MAX_QUEUED)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="thrifty-tracing", daemon=True)
        self._thread.start()

    def begin(self, ctx: Ctx | EmbeddingCall, operation: str = "chat") -> Trace | None:
        """The request's trace when sampled, else None; sets what dispatch and the providers read."""
        incoming = parse_traceparent(INCOMING.get())
        # W3C: the caller's tracestate travels with its continued trace, unchanged; a new trace drops it.
        TRACESTATE.set(_tracestate(INCOMING_STATE.get()) if incoming else None)
        trace_id = incoming[0] if incoming else (random.getrandbits(128) or 1)
        parent = incoming[1] if incoming else None
        if not self._sampled(self.sampler, trace_id, incoming, ctx.request.model):
            ON_ATTEMPT.set(None)
            # Unsampled: the caller's context still reaches the upstream (W3C pass-through), rewritten from
            # the parsed ids so that nothing else of the caller's header travels on.
            TRACEPARENT.set(f"00-{incoming[0]:032x}-{incoming[1]:016x}-{incoming[2]:02x}" if incoming else None)
            return None
        trace = Trace(trace_id, parent, ctx.t0, operation)
        ON_ATTEMPT.set(trace.on_attempt)
        TRACEPARENT.set(None)
        return trace

    def end(self, ctx: Ctx | EmbeddingCall, *, status: int, error: ThriftyError | None, raw_error: BaseException | None,
            response: ChatResponse | None) -> None:
        trace = ctx.trace
        if trace is None:
            return
        ctx.trace = None  # once
        ON_ATTEMPT.set(None)  # an embedding caller's next request in this context starts clean
        TRACEPARENT.set(None)
        TRACESTATE.set(None)
        if trace.attempts is None:
            trace.attempts = list(getattr(raw_error, "attempts", None) or ())
        # Spans are built off the event loop: the request pays one append (a full queue drops the oldest).
        self._ended.append((ctx, trace, status, error, response, time.perf_counter_ns()))

    def _drain(self) -> None:
        while self._ended:
            try:
                ctx, trace, status, error, response, now = self._ended.popleft()
            except IndexError:  # the other drainer (flush) took the last one
                return
            try:
                for span in self.builder.spans(ctx, trace, status, error, response, now):
                    self.processor.on_end(span)
            except Exception:  # a trace is never worth a crashed thread or a failed request
                log.exception("tracing: could not build the spans of request %s", ctx.meta.request_id)
            # Hand the GIL back after each request's spans: a thread that keeps it makes the event loop
            # wait up to the 5 ms switch interval (seen as a p99 tail in ``thrifty bench proxy``).
            time.sleep(0)

    def _run(self) -> None:
        while not self._stop.wait(_DRAIN_S):
            self._drain()
        self._drain()

    def flush(self, timeout_s: float = 10.0) -> bool:
        self._drain()
        return self.processor.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Export what is left and stop both threads; once (later calls do nothing)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)  # its last drain hands every ended request to the processor
        self.processor.shutdown()  # which exports them before it stops


def _exporter() -> Any:
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if protocol not in _PROTOCOLS:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; use one of {_PROTOCOLS}")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        return Grpc()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    return Http()
