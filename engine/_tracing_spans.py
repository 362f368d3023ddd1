"""Finished OpenTelemetry spans built from one request's record (engine.tracing's private half; imports
the SDK, so it is loaded only when tracing is on)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import msgspec
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from engine.tracing import _AFTER_CONTENT, _NOT_SENT, Trace, _span_id

if TYPE_CHECKING:
    from engine.doors.embeddings import EmbeddingCall
    from engine.errors import ThriftyError
    from engine.pipeline import Ctx
    from router.types import ChatResponse

_encode = msgspec.json.Encoder().encode
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK = Status(StatusCode.UNSET)
_DISPATCH_STAGES = ("dispatch", "first_chunk")


def sampled(sampler: Any, trace_id: int, incoming: tuple[int, int, int] | None, model: str) -> bool:
    """The OTEL_TRACES_SAMPLER's verdict (parent-based by default: a caller's sampled flag is obeyed)."""
    parent = None
    if incoming is not None:
        remote = SpanContext(incoming[0], incoming[1], is_remote=True, trace_flags=TraceFlags(incoming[2] & 1))
        parent = trace_api.set_span_in_context(NonRecordingSpan(remote))
    result = sampler.should_sample(parent, trace_id, f"chat {model}", SpanKind.SERVER)
    return bool(result.decision == Decision.RECORD_AND_SAMPLE)


class SpanBuilder:
    def __init__(self, resource: Any, scope: Any, log_content: bool) -> None:
        self.resource = resource
        self.scope = scope
        self.log_content = log_content

    def _span(self, trace: Trace, name: str, span_id: int, parent_id: int | None, start: int, end: int,
              attrs: dict[str, Any], kind: SpanKind = SpanKind.INTERNAL, status: Status = _OK,
              events: tuple[Event, ...] = (), remote_parent: bool = False) -> ReadableSpan:
        ctx = SpanContext(trace.trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
        parent = (SpanContext(trace.trace_id, parent_id, is_remote=remote_parent, trace_flags=_SAMPLED)
                  if parent_id else None)
        return ReadableSpan(name, ctx, parent, self.resource, attrs, events, (), kind, None, status,
                            trace.wall(start), trace.wall(max(start, end)), self.scope)

    def spans(self, ctx: Ctx | EmbeddingCall, trace: Trace, status: int, error: ThriftyError | None,
              response: ChatResponse | None, now: int) -> Iterator[ReadableSpan]:
        failed = Status(StatusCode.ERROR, type(error).__name__) if error is not None and status >= 500 else _OK
        if trace.operation == "embeddings":
            call = cast("EmbeddingCall", ctx)
            yield self._span(trace, f"embeddings {call.req.model}", trace.span_id, trace.parent_id, trace.t0,
                             now, _embedding_attrs(call, status, error), SpanKind.SERVER, failed,
                             remote_parent=True)
            yield from self._attempts(trace, trace.span_id, now, False)
            return
        ctx = cast("Ctx", ctx)
        model = ctx.request.model or "auto"
        attrs = self._request_attrs(ctx, status, error, response)
        events = tuple(Event("thrifty.attempt.skipped", {"thrifty.deployment": a.deployment,
                                                         "thrifty.attempt.kind": a.kind or "",
                                                         "thrifty.attempt.reason": a.error or ""})
                       for a in trace.attempts or () if a.kind in _NOT_SENT)
        yield self._span(trace, f"chat {model}", trace.span_id, trace.parent_id, trace.t0, now, attrs,
                         SpanKind.SERVER, failed, events, remote_parent=True)
        mark, dispatch_id = trace.t0, None
        for stage, ms in ctx.meta.stages.items():
            end = mark + int(ms * 1e6)
            span_id = _span_id()
            if stage in _DISPATCH_STAGES:
                dispatch_id = span_id
            yield self._span(trace, f"thrifty.{stage}", span_id, trace.span_id, mark, end,
                             {"thrifty.stage": stage})
            mark = end
        if ctx.request.stream and ctx.meta.cache not in ("hit", "exact") and dispatch_id is not None:
            yield self._span(trace, "thrifty.stream", _span_id(), trace.span_id, mark, now,
                             {"thrifty.stage": "stream", "thrifty.stream.complete": ctx.meta.complete})
        yield from self._attempts(trace, dispatch_id or trace.span_id, now, bool(ctx.request.stream))

    def _request_attrs(self, ctx: Ctx, status: int, error: ThriftyError | None,
                       response: ChatResponse | None) -> dict[str, Any]:
        m, req = ctx.meta, ctx.request
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": req.model or "auto",
            "thrifty.cache.outcome": m.cache, "thrifty.cost_usd": m.cost_usd, "thrifty.saved_usd": m.saved_usd,
            "thrifty.tenant": ctx.tenant, "thrifty.request_id": m.request_id, "thrifty.attempts": m.attempts,
            "thrifty.overhead_ms": m.overhead_ms, "http.response.status_code": status,
        }
        for key, value in (("gen_ai.response.model", m.model), ("gen_ai.provider.name", m.provider),
                           ("thrifty.task", m.task), ("thrifty.similarity", m.similarity),
                           ("thrifty.virtual_key", ctx.key_name), ("thrifty.budget", m.budget),
                           ("gen_ai.request.max_tokens", req.max_completion_tokens or req.max_tokens), ("gen_ai.request.temperature", req.temperature),
                           ("gen_ai.request.top_p", req.top_p)):
            if value is not None:
                attrs[key] = value
        if error is not None:
            attrs["error.type"] = getattr(error, "code", None) or type(error).__name__
        if response is not None:
            attrs["gen_ai.response.id"] = response.id
            reasons = [c.finish_reason for c in response.choices if c.finish_reason]
            if reasons:
                attrs["gen_ai.response.finish_reasons"] = reasons
            if response.usage is not None:
                attrs["gen_ai.usage.input_tokens"] = response.usage.prompt_tokens
                attrs["gen_ai.usage.output_tokens"] = response.usage.completion_tokens
        if self.log_content:
            attrs["gen_ai.input.messages"] = _encode(req.messages).decode()
            if response is not None:
                attrs["gen_ai.output.messages"] = _encode([c.message for c in response.choices]).decode()
        return attrs

    def _attempts(self, trace: Trace, parent_id: int, now: int, stream: bool) -> Iterator[ReadableSpan]:
        """One CLIENT span per upstream call; its outcome from the matching entry of dispatch's list
        (entries for skips are not calls; a failure after content belongs to the call that streamed it)."""
        listed = trace.attempts or ()
        outcomes = [a for a in listed if a.kind not in _NOT_SENT and not (a.error or "").startswith(_AFTER_CONTENT)]
        sent = trace.sent
        broken: dict[int, Any] = {}  # call index -> its failure after content
        for b in (a for a in listed if (a.error or "").startswith(_AFTER_CONTENT)):
            opened = [i for i, (_, _, r, _) in enumerate(sent) if r.deployment == b.deployment and i < len(outcomes)
                      and (outcomes[i].error is None or outcomes[i].kind == "continuation") and i not in broken]
            if opened:
                broken[opened[-1]] = b
        for i, (span_id, start, route, model_id) in enumerate(sent):
            a = outcomes[i] if i < len(outcomes) else None
            nxt = sent[i + 1][2].deployment if i + 1 < len(sent) else None
            attrs: dict[str, Any] = {
                "gen_ai.operation.name": trace.operation, "gen_ai.provider.name": route.provider,
                "gen_ai.request.model": route.model, "thrifty.deployment": route.deployment,
                "thrifty.model": model_id, "thrifty.attempt.index": i,
            }
            if a is not None and a.status is not None:
                attrs["http.response.status_code"] = a.status
            failure = a if a is not None and a.error is not None and a.kind != "continuation" else broken.get(i)
            # A stream's call lasts until its last chunk, not until the first one (what dispatch timed).
            end = now if a is None or (stream and failure is None and nxt is None) else start + int(
                (failure or a).elapsed * 1e9)
            status = _OK
            if failure is not None:
                attrs["error.type"] = failure.kind or "error"
                attrs["thrifty.attempt.outcome"] = (
                    "continued" if i in broken and nxt is not None else "retried" if nxt == route.deployment
                    else "fell_back" if nxt is not None else "failed")
                attrs["thrifty.retry.reason"] = failure.error or ""
                status = Status(StatusCode.ERROR, failure.kind or "error")
            else:
                attrs["thrifty.attempt.outcome"] = "ok" if a is not None else "unfinished"
            yield self._span(trace, f"{trace.operation} {route.model}", span_id, parent_id, start, end, attrs,
                             SpanKind.CLIENT, status)


def _embedding_attrs(call: EmbeddingCall, status: int, error: ThriftyError | None) -> dict[str, Any]:
    """The SERVER span's attributes of a ``/v1/embeddings`` request (input text is never recorded)."""
    m = call.meta
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "embeddings", "gen_ai.request.model": call.req.model,
        "gen_ai.response.model": call.model, "gen_ai.provider.name": m.provider or "",
        "gen_ai.usage.input_tokens": call.prompt_tokens, "thrifty.cache.outcome": m.cache,
        "thrifty.cost_usd": m.cost_usd, "thrifty.saved_usd": m.saved_usd, "thrifty.tenant": call.tenant,
        "thrifty.request_id": m.request_id, "thrifty.attempts": m.attempts, "thrifty.overhead_ms": m.overhead_ms,
        "http.response.status_code": status,
    }
    if call.key_name is not None:
        attrs["thrifty.virtual_key"] = call.key_name
    if error is not None:
        attrs["error.type"] = getattr(error, "code", None) or type(error).__name__
    return attrs
