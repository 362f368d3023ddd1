"""The one place that knows the order of the steps (DESIGN.md, "One request's path").

    scope ─► exact lookup ─► encode (once) ─► semantic lookup ─► budget ─► route ─► dispatch ─► store ─► ledger

Each step is timed into ``Meta.stages`` (milliseconds). ``overhead_ms`` is everything except the time
spent waiting on the upstream.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from cache import Hit, Scope, reads, scope, writes
from engine.budgets import Reservation
from engine.errors import BudgetExceeded, ThriftyError, translate
from engine.experiments import prefer
from engine.ledger import new_request_id
from engine.metrics import label
from engine.replay import replay_chunks
from engine.state.ratelimit import RateLimited
from engine.types import Completion, Meta
from router.types import ChatChunk, ChatRequest, ChatResponse, ThriftyOptions, text_of

if TYPE_CHECKING:
    from engine.engine import Engine

_encode = msgspec.json.Encoder().encode
_decode_response = msgspec.json.Decoder(ChatResponse).decode


@dataclass
class Ctx:
    """One request's state as it moves through the steps."""

    request: ChatRequest
    tenant: str
    key_name: str | None
    options: ThriftyOptions
    meta: Meta
    t0: int = field(default_factory=time.perf_counter_ns)
    mark: int = 0
    mode: str = "on"
    scope: Scope | None = None
    vector: np.ndarray | None = None
    upstream_ns: int = 0
    client_request_id: str | None = None  # the caller's x-request-id: stored, never a key
    reservation: Reservation | None = None  # budget reserved before dispatch, settled in finish()
    rate_checks: list[Any] | None = None  # rate limits admitted before dispatch: tokens charged in finish()
    candidates: list[Any] | None = None  # what dispatch was given: names the model an error came from
    decision: Any = None  # the router's last Decision: the ledger row keeps its compact form
    trace: Any = None  # engine.tracing.Trace when tracing is on and this request is sampled
    experiment: str | None = None  # engine.experiments: the experiment and arm this request was assigned to
    arm: str | None = None
    variant: str | None = None  # the arm's own cache partition (an arm that changes what answers)
    prefer_provider: str | None = None  # the arm's route: candidates on this provider are tried first
    # engine.shadow: the cache's answer not served (shadow mode, an adaptive exploration) or a near miss; once
    # the fresh answer is there, the two are compared off the request path.
    shadow: bool = False
    served: Hit | None = None  # the cache entry served (the ledger keeps its id)
    would_be: Hit | None = None
    near: tuple[int, float, bytes] | None = None

    def lap(self, stage: str) -> None:
        now = time.perf_counter_ns()
        self.meta.stages[stage] = (now - (self.mark or self.t0)) / 1e6
        self.mark = now

    def split(self, stage: str, part: str, ms: float) -> None:
        """Moves ``ms`` of the just-lapped ``stage`` into a stage ``part`` that follows it."""
        stages = self.meta.stages
        ms = min(ms, stages[stage])
        stages[stage] -= ms
        stages[part] = ms


def _pinned(request: ChatRequest) -> bool:
    """A named model, as opposed to ``auto`` (the router chooses)."""
    return request.model not in ("auto", "")


class Pipeline:
    def __init__(self, engine: Engine) -> None:
        self.e = engine

    # ------------------------------------------------------------------------------------------ prefix
    def begin(self, request: ChatRequest, tenant: str, key_name: str | None,
              options: ThriftyOptions | None, client_request_id: str | None) -> Ctx:
        opts = options or request.thrifty or ThriftyOptions()
        meta = Meta(request_id=new_request_id(), simulated=self.e.settings.simulated)
        ctx = Ctx(request, tenant, key_name, opts, meta, client_request_id=client_request_id)
        if self.e.state is not None and self.e.state.degraded:
            meta.state = "degraded"  # Redis unreachable: budgets and rate limits run on this replica's share
        if self.e.tracing is not None:
            ctx.trace = self.e.tracing.begin(ctx)
        cache_cfg = self.e.settings.raw.cache
        ctx.mode = "off" if not cache_cfg.enabled else (opts.cache_mode or cache_cfg.mode)
        if self.e.experiments.live or self.e.experiments.due():
            self.e.experiments.apply(ctx)  # before the lookup: an arm may change the model, policy or cache
        if (request.n or 1) > 1:
            ctx.mode = "off"  # one cached answer cannot stand for n answers, and n answers are never stored
        return ctx

    async def lookup(self, ctx: Ctx) -> ChatResponse | None:
        """Exact then semantic lookup; computes the vector (once) for the cache and the router."""
        e = self.e
        if ctx.mode == "off" and _pinned(ctx.request):
            # Nothing needs the scope or the vector: no cache, and a pinned model is not chosen by the
            # prompt's task.
            ctx.meta.cache = "bypass"
            return None
        owner, namespace = e.space_of(ctx.tenant, ctx.options.namespace)
        ctx.shadow = e.shadow.wants(ctx.options, namespace)
        ctx.scope = scope(ctx.request, namespace=namespace, tenant=owner, variant=ctx.variant)
        ctx.lap("scope")
        if reads(ctx.mode):
            # In-flight writes first: an entry leaves that map only after its commit is visible, so asking
            # the store first could miss it in both places while it moves (and fall through to semantic).
            hit = e.pending_exact(ctx.scope) or e.cache.lookup_exact(ctx.scope)
            ctx.lap("exact")
            if hit is not None:
                if not ctx.shadow:
                    return self._served(ctx, hit, "exact")
                ctx.would_be = hit  # shadow: recorded, not served; a semantic lookup would find the same
        ctx.vector = await e.embed(ctx.scope.text or text_of(ctx.request.messages[-1].content))
        ctx.lap("encode")
        if reads(ctx.mode) and ctx.scope.text and ctx.would_be is None:
            return self._semantic(ctx)
        ctx.meta.cache = "miss" if ctx.mode != "off" else "bypass"
        return None

    def _semantic(self, ctx: Ctx) -> ChatResponse | None:
        e = self.e
        assert ctx.scope is not None and ctx.vector is not None
        if e.near_margin is not None:  # near misses to judge later (cache.near_miss)
            probe: dict[str, Any] = {"margin": e.near_margin}
            hit = e.cache.lookup(ctx.scope, ctx.vector, threshold=ctx.options.threshold, probe=probe)
            ctx.near = probe.get("near")
            ctx.lap("search")
        else:
            timing: dict[str, float] = {}
            hit = e.cache.lookup(ctx.scope, ctx.vector, threshold=ctx.options.threshold, timing=timing)
            ctx.lap("search")
            if "verify_ms" in timing:  # the verifier's share of the lookup is a stage of its own
                ctx.split("search", "verify", timing["verify_ms"])
        if hit is not None:
            if not (ctx.shadow or hit.explore):
                return self._served(ctx, hit, "hit")
            ctx.would_be = hit  # served fresh, compared later (engine.shadow)
        ctx.meta.cache = "miss" if ctx.mode != "off" else "bypass"
        return None

    def _served(self, ctx: Ctx, hit: Hit, kind: str) -> ChatResponse:
        response = _decode_response(hit.response)
        response.id = f"chatcmpl-{ctx.meta.request_id}"
        response.created = int(time.time())
        m = ctx.meta
        m.cache = kind  # type: ignore[assignment]
        m.model = hit.model or response.model  # the catalog id, as on the miss that stored it
        m.provider = "cache"
        m.saved_usd = hit.cost_usd
        m.similarity = hit.similarity
        ctx.would_be = None
        ctx.served = hit
        if not hit.id and ctx.scope is not None:  # its cache write is still in flight: no entry id yet
            self.e.served_in_flight(m.request_id, ctx.scope.exact_key)
        return response

    async def route(self, ctx: Ctx) -> list[Any]:
        e = self.e
        decision = ctx.decision = e.rank(ctx.request, ctx.vector, tenant=ctx.tenant, options=ctx.options,
                                         policy=ctx.options.policy)
        ctx.meta.task = decision.task
        if ctx.prefer_provider is not None:
            decision.candidates = prefer(decision.candidates, ctx.prefer_provider)
        ctx.lap("route")
        checks = e.rate_limits.checks(ctx.tenant, ctx.key_name)
        if checks:  # after the cache (a hit never counts), before the budget and dispatch
            try:
                await e.rate_limits.admit(checks)
            except RateLimited as exc:
                e.metrics.rate_limited.labels(ctx.tenant, exc.type).inc()
                raise
            ctx.rate_checks = checks
            ctx.lap("rate_limit")
        if not e.budgets.subjects(ctx.tenant, ctx.key_name):
            return list(decision.candidates)  # no budget: no work
        # Reserve what the request could cost: the dearest candidate a fallback could end on.
        expected = max((c.expected_cost_usd for c in decision.candidates), default=0.0)
        verdict, ctx.reservation = await e.budgets.reserve(ctx.tenant, ctx.key_name, expected)
        ctx.lap("budget")
        if verdict.action == "reject":
            e.metrics.budget_actions.labels(ctx.tenant, "reject").inc()
            raise BudgetExceeded(f"budget exhausted: {verdict.message}")
        if verdict.action == "warn":
            ctx.meta.budget = f"warning: {verdict.message}"
        if verdict.action != "downgrade":
            return list(decision.candidates)
        e.metrics.budget_actions.labels(ctx.tenant, "downgrade").inc()
        ctx.meta.budget = f"downgraded: {verdict.message}"
        request = ctx.request
        if _pinned(request):
            request = msgspec.structs.replace(request, model="auto")  # a pinned model is downgraded too
        # The reservation made for the first ranking stands: the cheapest route costs no more than it.
        decision = ctx.decision = e.rank(request, ctx.vector, tenant=ctx.tenant, options=ctx.options, policy="cost")
        ctx.meta.task = decision.task
        if ctx.prefer_provider is not None:
            decision.candidates = prefer(decision.candidates, ctx.prefer_provider)
        return list(decision.candidates)

    # ------------------------------------------------------------------------------------------ complete
    async def complete(self, ctx: Ctx) -> Completion:
        try:
            response = await self.lookup(ctx)
            if response is None:
                candidates = ctx.candidates = await self.route(ctx)
                t = time.perf_counter_ns()
                result = await self.e.dispatcher.complete(ctx.request, candidates, self.e.deadline(ctx.options))
                ctx.upstream_ns = time.perf_counter_ns() - t
                ctx.lap("dispatch")
                response = result.response
                self._account(ctx, result)
                if writes(ctx.mode) and self._cacheable(ctx, response) and not self._shadowed_exact(ctx):
                    self._store(ctx, response, result)
                    ctx.lap("store")
        except Exception as exc:
            self.finish(ctx, error=exc)
            raise _accounted(exc, ctx) from exc
        self.finish(ctx, response=response)
        if ctx.would_be is not None or ctx.near is not None:
            self.compare_later(ctx, response)
        return Completion(response=response, meta=ctx.meta)

    @staticmethod
    def _shadowed_exact(ctx: Ctx) -> bool:
        """A shadowed exact hit keeps its entry: the fresh answer would replace the one being checked."""
        return ctx.would_be is not None and ctx.would_be.score is None

    def compare_later(self, ctx: Ctx, response: ChatResponse | None) -> None:
        """Hand the would-be (or near-miss) answer and the fresh one to engine.shadow; never waits."""
        if response is None or ctx.scope is None or ctx.meta.provider == "cache":
            return
        from engine.shadow import Job

        rf = ctx.request.response_format
        structured = rf is not None and getattr(rf, "type", "text") != "text"
        hit, near = ctx.would_be, ctx.near
        if hit is not None:
            kind, entry_id, similarity, score, cached = ("explore" if hit.explore else "shadow", hit.id or None,
                                                         hit.similarity, hit.score, hit.response)
        elif near is not None:
            kind, (entry_id, similarity, cached), score = "nearmiss", near, near[1]
        else:
            return
        self.e.shadow.submit(Job(kind=kind, request_id=ctx.meta.request_id, tenant=ctx.tenant,  # type: ignore[arg-type]
                                 namespace=ctx.scope.namespace, entry_id=entry_id, similarity=similarity, score=score,
                                 cached=cached, fresh=response, question=ctx.scope.text, structured=structured))

    def _account(self, ctx: Ctx, result: Any) -> None:
        m = ctx.meta
        cand = result.candidate
        m.model = cand.model.id
        m.provider = cand.route.provider
        m.cost_usd = float(result.cost_usd or 0.0)
        m.cost_estimated = bool(result.cost_estimated)
        m.attempts = len(result.attempts)
        if ctx.trace is not None:
            ctx.trace.attempts = result.attempts
        for a in result.attempts:  # failed tries that a retry or fallback recovered from still count
            if a.error is not None:
                self.e.metrics.upstream_errors.labels(label(a.deployment), label(a.kind)).inc()

    def _cacheable(self, ctx: Ctx, response: ChatResponse) -> bool:
        allowed = self.e.settings.raw.cache.cache_finish_reasons
        return bool(response.choices) and all(c.finish_reason in allowed for c in response.choices)

    def _store(self, ctx: Ctx, response: ChatResponse, result: Any) -> None:
        assert ctx.scope is not None and ctx.vector is not None
        usage = response.usage
        ttl = ctx.options.ttl if ctx.options.ttl is not None else self.e.settings.raw.cache.ttl_s
        self.e.cache_insert(ctx.scope, ctx.vector, _encode(response), model=ctx.meta.model or response.model,
                            cost_usd=ctx.meta.cost_usd, ttl=ttl,
                            tokens_in=usage.prompt_tokens if usage else 0,
                            tokens_out=usage.completion_tokens if usage else 0)

    # ------------------------------------------------------------------------------------------ stream
    def stream(self, ctx: Ctx) -> EngineStream:
        return EngineStream(self, ctx)

    # ------------------------------------------------------------------------------------------ suffix
    def finish(self, ctx: Ctx, *, response: ChatResponse | None = None, error: BaseException | None = None) -> None:
        """Latency figures, metrics and the ledger row: once per request, whatever its outcome."""
        e, m = self.e, ctx.meta
        total_ns = time.perf_counter_ns() - ctx.t0
        m.latency_ms = total_ns / 1e6
        m.overhead_ms = (total_ns - ctx.upstream_ns) / 1e6
        e.budgets.settle(ctx.reservation, m.cost_usd)  # success, error, stream end or disconnect
        ctx.reservation = None
        if ctx.rate_checks is not None:
            usage = response.usage if response is not None else None
            e.rate_limits.charge(ctx.rate_checks, (usage.prompt_tokens + usage.completion_tokens) if usage else 0)
            ctx.rate_checks = None
        err = translate(error) if error is not None else None
        status = err.status if err is not None else 200
        if err is not None and not isinstance(error, ThriftyError) and m.cache == "miss":
            m.complete = False
        e.observe(ctx, status=status, error=err, response=response)
        if ctx.trace is not None and e.tracing is not None:
            e.tracing.end(ctx, status=status, error=err, raw_error=error, response=response)


class EngineStream:
    """An async iterator of chunks; ``start()`` runs the pipeline up to the first chunk so that errors
    before any content become a clean error response, and ``meta`` is final once iteration ends."""

    def __init__(self, pipeline: Pipeline, ctx: Ctx) -> None:
        self.p = pipeline
        self.ctx = ctx
        self.meta = ctx.meta
        self._source: AsyncIterator[ChatChunk] | None = None
        self._upstream: Any = None
        self._done = False

    async def start(self) -> ChatChunk | None:
        ctx, p = self.ctx, self.p
        try:
            response = await p.lookup(ctx)
            if response is not None:
                include = bool(ctx.request.stream_options and ctx.request.stream_options.include_usage)
                self._response = response
                self._source = _aiter(replay_chunks(response, include_usage=include))
                ctx.meta.overhead_ms = (time.perf_counter_ns() - ctx.t0) / 1e6  # all of it is thrifty's
                return None
            candidates = ctx.candidates = await p.route(ctx)
            self._t_upstream = time.perf_counter_ns()
            # Dispatch retries and falls back until a stream has produced its first content chunk.
            self._upstream = await p.e.dispatcher.stream(ctx.request, candidates, p.e.deadline(ctx.options))
            ctx.lap("first_chunk")
            # The headers go out now, before finish(): the overhead so far is everything but the wait
            # for the first chunk.
            ctx.meta.overhead_ms = (self._t_upstream - ctx.t0) / 1e6
            cand = self._upstream.candidate
            ctx.meta.model, ctx.meta.provider = cand.model.id, cand.route.provider
            self._source = self._upstream.__aiter__()
            return None
        except Exception as exc:
            p.finish(ctx, error=exc)
            self._done = True
            raise _accounted(exc, ctx) from exc

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ChatChunk]:
        if self._source is None:
            if self._done:
                raise ThriftyError("this stream already failed to start; make a new one")
            first = await self.start()  # ``async for chunk in engine.stream(req)`` needs no start() call
            if first is not None:
                yield first
        assert self._source is not None
        error: BaseException | None = ThriftyError("stream closed by the client before it ended")
        try:
            async for chunk in self._source:
                yield chunk
            error = None
        except Exception as exc:
            error = exc
            raise
        finally:
            if error is not None and self._upstream is not None:
                with contextlib.suppress(Exception):
                    await self._upstream.aclose()  # release the upstream connection now, not at GC
            self._end(error=error)

    def _end(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        ctx, p = self.ctx, self.p
        if self._upstream is None:  # a replayed hit
            p.finish(ctx, response=getattr(self, "_response", None))
            return
        ctx.upstream_ns = time.perf_counter_ns() - self._t_upstream
        result = self._upstream
        if ctx.trace is not None:
            ctx.trace.attempts = result.attempts
        if result.cost_usd is not None:
            p._account(ctx, result)
        response = result.response
        complete = error is None and bool(result.complete)
        ctx.meta.complete = complete
        # A continued answer (a fallback finished a broken stream) is stitched from two models: not stored.
        stored = complete and not result.continued and response is not None and writes(ctx.mode)
        if stored and p._cacheable(ctx, response) and not p._shadowed_exact(ctx):
            p._store(ctx, response, result)
        p.finish(ctx, response=response, error=error)
        if complete and (ctx.would_be is not None or ctx.near is not None):
            p.compare_later(ctx, response)

    async def aclose(self) -> None:
        if not self._done:
            self._end(error=ThriftyError("stream closed by the client before it ended"))


def _accounted(exc: BaseException, ctx: Ctx) -> ThriftyError:
    """The engine's error for ``exc``, carrying the request's account for the error response's headers."""
    err = translate(exc)
    m = err.meta = ctx.meta
    if m.model is None and ctx.candidates:
        # Dispatch failed: the headers name the deployment whose failure ended it (the last one tried).
        attempts = getattr(exc, "attempts", None) or ()
        last = attempts[-1].deployment if attempts else ctx.candidates[0].deployment
        cand = next((c for c in ctx.candidates if c.deployment == last), ctx.candidates[0])
        m.model, m.provider = cand.model.id, cand.route.provider
    return err


async def _aiter(it: Any) -> AsyncIterator[ChatChunk]:
    for x in it:
        yield x
