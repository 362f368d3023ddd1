"""The embeddable :class:`Engine`: the rooms built from settings and joined by the pipeline."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from cache import Hit, namespace_problem
from engine import config as config_mod
from engine._export_schedule import scheduled_export
from engine.audit import AuditLog
from engine.budgets import BudgetStore, BudgetTracker, LocalBudgetStore
from engine.errors import RequestError, ThriftyError, translate
from engine.ledger import Ledger, UsageRecord, routing_of
from engine.metrics import Metrics, label
from engine.overlay import Overlay
from engine.pipeline import Ctx, EngineStream, Pipeline
from engine.state import build_state
from engine.state.ratelimit import RateLimits
from engine.tracing import build_tracing
from engine.types import ChatRequest, Completion, ThriftyOptions
from router.types import ChatChunk, ChatResponse, text_of

log = logging.getLogger("thrifty")


def _as_request(request: ChatRequest | dict[str, Any]) -> ChatRequest:
    if isinstance(request, ChatRequest):
        return request
    try:
        return msgspec.convert(request, ChatRequest)
    except msgspec.ValidationError as exc:
        raise RequestError(f"invalid request: {exc}") from exc


class Engine:
    """thrifty embedded in a Python service.

    >>> engine = Engine()                                   # embedded defaults (simulated provider)
    >>> done = engine.complete_sync({"messages": [{"role": "user", "content": "hi"}]})
    >>> done.meta.cache, done.text[:20]
    """

    def __init__(self, settings: config_mod.Settings | None = None, *, encoder: Any = None) -> None:
        from engine.wiring import build_components

        self.settings = settings or config_mod.load(None)
        self.worker = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.metrics = Metrics()
        # First, so that a bad OTEL_* setting fails before anything is opened. None when off: nothing of
        # OpenTelemetry is loaded then.
        self.tracing = build_tracing(self.settings.raw)
        lcfg = self.settings.raw.ledger
        self.ledger = Ledger(self.settings.data_dir / "ledger.sqlite3", log_content=self.settings.raw.log_content,
                             flush_interval=lcfg.flush_interval_s, journal=lcfg.journal, owner=self.worker)
        self.audit = AuditLog(self.settings.data_dir / "audit.sqlite3")  # run-time changes: who, when, old -> new
        self.overlay = Overlay(self)  # run-time controls, persisted to <data_dir>/overlay.yaml
        self.upstream_failures: deque[dict[str, Any]] = deque(maxlen=50)  # failed requests' attempt lists
        # Shared state across replicas (engine/state): None without ``state:``, and redis is not imported then.
        self.state = build_state(self.settings, self.metrics, self.worker)
        self.rate_limits = RateLimits(self.settings.rate_limits, self.state.rate_limiter if self.state else None)
        self.budgets = BudgetTracker(
            self.settings.budgets, store_factory=self._budget_store,
            on_warn=lambda subject, period, spent, soft: self.metrics.budget_warnings.labels(subject, period).inc(),
        )
        self.parts = build_components(self.settings, encoder)
        self.catalog = self.parts.catalog
        self.dispatcher = self.parts.dispatcher
        self.metrics.watch_open_circuits(self.parts.open_circuits)
        self.dispatcher.on_bad_events = lambda deployment, n: self.metrics.stream_bad_events.labels(deployment).inc(n)
        from engine.experiments import build_experiments

        self.experiments = build_experiments(self.settings, self.catalog, self.parts.providers, audit=self.audit,
                                             metrics=self.metrics, engine=self)
        if self.state is not None:
            self.experiments.shared = self.state.experiments  # None when shared_controls is off
        self.pipeline = Pipeline(self)
        from engine.shadow import ShadowWorker

        cache_cfg = self.settings.raw.cache
        self.shadow = ShadowWorker(self, cache_cfg.shadow)  # shadow mode, explorations, near misses (engine.shadow)
        self.near_margin: float | None = cache_cfg.near_miss.margin if cache_cfg.near_miss.enabled else None
        self._exporter: Any = None  # the scheduled usage export, started with the server
        self._cache: Any = None
        self._start_lock = threading.Lock()
        # Cache writes leave the request path: one writer thread, so LMDB sees a single writer here.
        self._store_pool = ThreadPoolExecutor(1, thread_name_prefix="thrifty-store")
        self._pending: set[Future[None]] = set()
        # Answers whose cache write has not landed yet, by exact key: an identical request that arrives
        # in that window is still an exact hit (read-your-writes within one process).
        self._inflight: dict[bytes, Hit] = {}
        # Requests served from that map (their entry had no id yet): request id -> exact key, so that feedback
        # can still find the entry once it is written (engine.feedback). Bounded; only such rare hits land here.
        self._inflight_served: OrderedDict[str, bytes] = OrderedDict()
        self._loop_thread: _LoopThread | None = None
        self._overlay_watch: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, source: str | Path | dict[str, Any] | None, *, encoder: Any = None) -> Engine:
        """An Engine from a YAML file, a dict, or None (``THRIFTY_CONFIG``, else embedded defaults)."""
        return cls(config_mod.load(source), encoder=encoder)

    # ------------------------------------------------------------------------------------------ lifecycle
    @property
    def cache(self) -> Any:
        if self._cache is None:
            with self._start_lock:
                if self._cache is None:
                    self._cache = self.parts.open_cache()
                    self._attach_gate(self._cache)
                    self._cache.start_sweeper()  # TTL expiry, eviction, hit counts, snapshots: off the request path
        return self._cache

    def _attach_gate(self, cache: Any) -> None:
        """The adaptive gate (cache.adaptive) when adaptive thresholds or near-miss approvals are on."""
        cfg = self.settings.raw.cache
        if not (cfg.adaptive.enabled or cfg.near_miss.enabled):
            return
        from cache.adaptive import AdaptiveGate

        learned = bool(getattr(getattr(cache.policy, "config", None), "learned", False))  # scores are probabilities
        cache.gate = AdaptiveGate(cfg.adaptive, self.settings.data_dir / "cache" / "adaptive.sqlite3", learned=learned)
        cache.gate_adaptive = cfg.adaptive.enabled

    @property
    def gate(self) -> Any:
        """The cache's adaptive gate, or None."""
        return self.cache.gate

    async def feedback(self, request_id: str, *, rating: str | None = None, score: float | None = None,
                       correct_answer: str | None = None, tenant: str = "default") -> Any:
        """Rate a request's answer (``rating`` good|bad, or ``score`` in [0, 1]). A cached answer rated bad is
        withdrawn from the cache at once. Only ``tenant``'s own requests can be rated. See engine.feedback."""
        from engine.feedback import FeedbackRequest, apply_feedback

        body = FeedbackRequest(request_id=request_id, rating=rating, score=score,  # type: ignore[arg-type]
                               correct_answer=correct_answer)
        return await apply_feedback(self, body, tenant)

    def feedback_sync(self, request_id: str, **kw: Any) -> Any:
        return self._loop().run(self.feedback(request_id, **kw))

    async def start(self) -> None:
        """Open the cache, warm the encoder and build the providers' clients, so the first request
        does not pay for them."""
        self.dispatcher.warm()
        _ = self.cache
        if self.state is not None:  # replication, circuit subscription, Redis health probing
            self.state.start(self.cache, self.dispatcher.breakers, probe_ttl_s=self.settings.raw.dispatch.deadline_s)
        if self._exporter is None:
            self._exporter = scheduled_export(self.settings)
            if self._exporter is not None:
                self._exporter.start()
        if self._overlay_watch is None:  # other workers' run-time changes (engine.overlay)
            self._overlay_watch = asyncio.get_running_loop().create_task(self.overlay.watch())
        await asyncio.to_thread(self.parts.encoder.encode, ["warm up"])

    async def aclose(self) -> None:
        if self._overlay_watch is not None:
            self._overlay_watch.cancel()
            self._overlay_watch = None
        if self.experiments.judge is not None:
            await self.experiments.judge.drain(timeout=5.0)  # its calls need the dispatcher, closed below
        await self.shadow.drain(timeout=10.0)  # shadow comparisons may ask a judge model through the dispatcher
        if self._exporter is not None:
            await asyncio.to_thread(self._exporter.stop)
            self._exporter = None
        await self.dispatcher.aclose()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # exports the last requests' spans first
        await self.flush()
        await asyncio.to_thread(self.budgets.close)
        if self.state is not None:  # the last cache writes are published before the cache closes
            await self.state.aclose(self._cache)
            await asyncio.to_thread(self.state.close)
        if self._cache is not None:
            if self._cache.gate is not None:
                self._cache.gate.close()
            self._cache.close()
            self._cache = None

    def close(self) -> None:
        if self._loop_thread is not None:
            self._loop_thread.run(self.aclose())
            self._loop_thread.stop()
            self._loop_thread = None
        else:
            asyncio.run(self.aclose())
        self.ledger.close()
        self.audit.close()

    async def flush(self) -> None:
        """Wait until every cache write and ledger row queued so far has landed (and every shadow comparison
        started so far has stored its label)."""
        await self.shadow.drain(timeout=10.0)
        await asyncio.to_thread(self._flush_sync)

    def _flush_sync(self) -> None:
        for fut in list(self._pending):
            fut.result()
        self.budgets.flush()
        self.ledger.flush()

    # ------------------------------------------------------------------------------------------ the API
    async def complete(self, request: ChatRequest | dict[str, Any], *, tenant: str = "default",
                       key_name: str | None = None, options: ThriftyOptions | None = None,
                       client_request_id: str | None = None) -> Completion:
        """``client_request_id``: the caller's own id, stored beside the server-made one in the ledger
        (never a key). ``completion.meta.request_id`` is the server's."""
        req = _as_request(request)
        if req.stream:
            req = msgspec.structs.replace(req, stream=False)
        ctx = self.pipeline.begin(req, tenant, key_name, options, client_request_id)
        return await self.pipeline.complete(ctx)

    def stream(self, request: ChatRequest | dict[str, Any], *, tenant: str = "default",
               key_name: str | None = None, options: ThriftyOptions | None = None,
               client_request_id: str | None = None) -> EngineStream:
        """An async iterator of chunks. ``await s.start()`` is optional: iteration starts it."""
        req = _as_request(request)
        if not req.stream:
            req = msgspec.structs.replace(req, stream=True)
        ctx = self.pipeline.begin(req, tenant, key_name, options, client_request_id)
        return self.pipeline.stream(ctx)

    async def stream_chunks(self, request: ChatRequest | dict[str, Any], **kw: Any) -> AsyncIterator[ChatChunk]:
        s = self.stream(request, **kw)
        first = await s.start()
        if first is not None:
            yield first
        async for chunk in s:
            yield chunk

    def complete_sync(self, request: ChatRequest | dict[str, Any], **kw: Any) -> Completion:
        return self._loop().run(self.complete(request, **kw))

    def stream_sync(self, request: ChatRequest | dict[str, Any], **kw: Any) -> Iterator[ChatChunk]:
        loop = self._loop()
        agen = self.stream_chunks(request, **kw)
        while True:
            try:
                yield loop.run(agen.__anext__())
            except StopAsyncIteration:
                return

    def _loop(self) -> _LoopThread:
        if self._loop_thread is None:
            self._loop_thread = _LoopThread()
        return self._loop_thread

    # ------------------------------------------------------------------------------------------ for the pipeline
    def space_of(self, tenant: str, requested: str | None) -> tuple[str | None, str]:
        """The (owner tenant, namespace) a request's cache lives in. The tenant comes from the caller's
        key; a requested namespace only picks a sub-space of it, unless the tenant's config grants that
        name as shared (owner ``None``: one space for every tenant granted the name)."""
        cfg = self.settings.raw.tenants.get(tenant)
        if requested is None:
            return tenant, (cfg.namespace if cfg and cfg.namespace else "default")
        problem = namespace_problem(requested)
        if problem:
            raise RequestError(f"namespace (x-thrifty-namespace / thrifty.namespace) {problem}", param="namespace")
        if cfg is not None and requested in cfg.shared_namespaces:
            return None, requested
        return tenant, requested

    def _budget_store(self) -> BudgetStore:
        ttl_s = self.settings.raw.dispatch.deadline_s + 60.0
        local = LocalBudgetStore(self.settings.data_dir / "budgets.sqlite3", owner=self.worker, ttl_s=ttl_s,
                                 seed=self._ledger_spend)
        if self.state is None:
            return local
        return self.state.make_budget_store(local, ttl_s=ttl_s)  # shared by replicas, seeded from local

    def _ledger_spend(self) -> list[tuple[str, str, str, float]]:
        """Spend per budget counter as the ledger has it: where a new counters file starts from."""
        self.ledger.flush()
        rows = []
        for col, kind in (("tenant", "tenant"), ("virtual_key", "key")):
            for span, period in (("day", "daily"), ("month", "monthly")):
                rows += [(f"{kind}:{r['k']}", period, r["w"], float(r["s"])) for r in self.ledger.query(
                    f"SELECT {col} AS k, {span} AS w, SUM(cost_usd) AS s FROM requests "
                    f"WHERE {col} IS NOT NULL GROUP BY {col}, {span}")]
        return rows

    async def embed(self, text: str) -> np.ndarray:
        return await self.parts.embed(text)

    def deadline(self, options: ThriftyOptions | None = None) -> Any:
        return self.parts.deadline(options)

    def rank(self, request: ChatRequest, vector: np.ndarray | None, *, tenant: str,
             options: ThriftyOptions, policy: str | None) -> Any:
        return self.parts.rank(request, vector, tenant=tenant, options=options, policy=policy,
                               remaining_budget=None)

    def cache_insert(self, scope: Any, vector: np.ndarray, payload: bytes, **meta: Any) -> None:
        key = scope.exact_key
        self._inflight[key] = Hit(0, payload, 1.0, scope.text, "exact (write in flight)", meta["model"],
                                  meta["cost_usd"], meta["tokens_in"], meta["tokens_out"])
        fut = self._store_pool.submit(self.parts.insert, self.cache, scope, vector, payload, **meta)
        self._pending.add(fut)
        fut.add_done_callback(lambda f: self._stored(f, key))

    def pending_exact(self, scope: Any) -> Hit | None:
        return self._inflight.get(scope.exact_key) if self._inflight else None

    def served_in_flight(self, request_id: str, exact_key: bytes) -> None:
        """``request_id`` was served an answer whose cache write had not landed (no entry id yet)."""
        self._inflight_served[request_id] = exact_key
        if len(self._inflight_served) > 4096:
            self._inflight_served.popitem(last=False)

    def entry_served_in_flight(self, request_id: str) -> int | None:
        """The entry id of an answer served while its write was in flight, once written (waits for the
        writes queued so far); None when unknown here (another worker served it) or gone."""
        key = self._inflight_served.get(request_id)
        if key is None:
            return None
        for fut in list(self._pending):
            fut.result()
        found = self.cache.store.get_exact(key)
        return found[0] if found is not None else None

    def _stored(self, fut: Future[None], key: bytes) -> None:
        self._pending.discard(fut)
        self._inflight.pop(key, None)
        exc = fut.exception()
        if exc is not None:  # a failed cache write never fails the request that produced the answer
            log.warning("cache write failed: %s", exc)
            self.metrics.cache_outcomes.labels("store_error").inc()

    def cache_stats(self) -> Any:
        return self.cache.stats()

    def reconfigure(self, settings: config_mod.Settings) -> None:
        """Apply run-time changes (engine.overlay: routing, cache mode/threshold/TTL, budgets, model
        lists) to the running engine. The pipeline reads cache mode and TTL from ``settings`` per request."""
        self.parts.reconfigure(settings)  # first: raises ConfigError, with nothing changed, if it cannot build
        old, old_budgets = self.settings.raw.cache, self.settings.budgets
        self.settings = settings
        self.budgets.configure(settings.budgets)
        added = [s for s in settings.budgets if s not in old_budgets]
        if added:  # nothing counted their spend until now: from the ledger, today's and this month's
            self.ledger.flush()
            self.budgets.catch_up(added, self._spend_of)
        new = settings.raw.cache
        if self._cache is not None and (old.policy, old.threshold) != (new.policy, new.threshold):
            self._cache.policy = self.parts.hit_policy()
        if self._cache is not None and old.adaptive != new.adaptive:
            # A new gate on the same labels file (it replays them); the old one is left to lookups in flight.
            self._cache.gate, self._cache.gate_adaptive = None, False
            self._attach_gate(self._cache)

    def _spend_of(self, subject: str, period: str, window: str) -> float:
        """The ledger's spend of a budget counter ("tenant:x"/"key:y", daily/monthly, its day or month)."""
        kind, name = subject.split(":", 1)
        who = {"tenant": name} if kind == "tenant" else {"virtual_key": name}
        return self.ledger.spend(**who, **({"day": window} if period == "daily" else {"month": window}))

    def routing_rules(self) -> Any:
        return self.parts.rules()

    def set_routing_rules(self, raw: Any) -> Any:
        return self.parts.set_rules(raw)

    def observe(self, ctx: Ctx, *, status: int, error: ThriftyError | None, response: ChatResponse | None) -> None:
        m, mt = ctx.meta, self.metrics
        mt.requests.labels(m.cache, label(m.model), label(m.provider), str(status)).inc()
        mt.cache_outcomes.labels(m.cache).inc()
        for stage, ms in m.stages.items():
            mt.stage.labels(stage).observe(ms / 1e3)
        mt.overhead.observe(m.overhead_ms / 1e3)
        # Tokens of every upstream answer (miss or bypass); a cache hit consumed none.
        usage = response.usage if response is not None and m.provider != "cache" else None
        if m.cost_usd:
            mt.spend.labels(ctx.tenant, label(m.model), label(m.provider)).inc(m.cost_usd)
        if m.saved_usd:
            mt.saved.labels(ctx.tenant).inc(m.saved_usd)
        if usage is not None:
            mt.tokens.labels("prompt", label(m.model)).inc(usage.prompt_tokens)
            mt.tokens.labels("completion", label(m.model)).inc(usage.completion_tokens)
        for attempt in getattr(error, "details", None) or ():
            if isinstance(attempt, dict):
                mt.upstream_errors.labels(label(attempt.get("deployment")), label(attempt.get("kind"))).inc()
        if error is not None and error.details:  # the dashboard's recent upstream errors, with their attempts
            self.upstream_failures.append({"ts": time.time(), "request_id": m.request_id, "tenant": ctx.tenant,
                                           "status": status, "attempts": error.details})
        if ctx.experiment is not None:
            self.experiments.observe(ctx, status, usage, response)  # per-arm metrics, guard rails, judge sample
        record = self._record(ctx, status, error, response, usage)
        self.ledger.record(record)
        if self.state is not None:  # feedback on this request may reach another replica
            self.state.feedback_index.add(record.request_id, _index_fields(ctx, record))

    def _record(self, ctx: Ctx, status: int, error: ThriftyError | None, response: ChatResponse | None,
                usage: Any) -> UsageRecord:
        m = ctx.meta
        details = usage.prompt_tokens_details if usage is not None else None
        cdetails = usage.completion_tokens_details if usage is not None else None
        answer = None
        if response is not None and response.choices:
            answer = response.choices[0].message.content
        return UsageRecord(
            request_id=m.request_id, client_request_id=ctx.client_request_id, ts=time.time(), tenant=ctx.tenant,
            virtual_key=ctx.key_name,
            worker=self.worker, cache=m.cache, status=status, route=ctx.request.model, model=m.model,
            provider=m.provider, task=m.task, stream=bool(ctx.request.stream),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cached_tokens=details.cached_tokens if details else 0,
            reasoning_tokens=cdetails.reasoning_tokens if cdetails else 0,
            cost_usd=m.cost_usd, cost_estimated=m.cost_estimated, saved_usd=m.saved_usd,
            error_class=type(error).__name__ if error is not None else None,
            latency_ms=m.latency_ms, overhead_ms=m.overhead_ms, stages=m.stages, attempts=m.attempts,
            budget_action=m.budget,
            prompt=text_of(ctx.request.messages[-1].content) if ctx.request.messages else None,
            answer=answer,
            routing=routing_of(ctx.decision) if ctx.decision is not None else None,
            experiment=ctx.experiment, arm=ctx.arm,
            **_cache_fields(ctx),
        )


def _cache_fields(ctx: Ctx) -> dict[str, Any]:
    """The ledger's cache columns: the space, and the entry served (or, shadowed, the one not served)."""
    hit = ctx.served or ctx.would_be
    fields: dict[str, Any] = {"namespace": ctx.scope.namespace if ctx.scope is not None else None}
    if hit is not None:
        fields.update(entry_id=hit.id or None, similarity=hit.similarity, hit_score=hit.score)
    return fields


def _index_fields(ctx: Ctx, record: UsageRecord) -> dict[str, Any]:
    """What another replica needs to take feedback on this request (engine.state.feedback_index)."""
    hit = ctx.served or ctx.would_be
    key = b""
    if hit is not None:
        key = hit.exact_key or (ctx.scope.exact_key if ctx.scope is not None and record.cache == "exact" else b"")
    return {"tenant": record.tenant, "namespace": record.namespace, "cache": record.cache, "key": key.hex(),
            "similarity": record.similarity, "hit_score": record.hit_score, "saved_usd": record.saved_usd}


class _LoopThread:
    """A private event loop in a daemon thread, behind the sync twins."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="thrifty-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


__all__ = ["Engine", "translate"]
