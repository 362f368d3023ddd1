"""``POST /v1/embeddings``: passed to a provider that offers embeddings, exact-cached per tenant and per
input, costed in the ledger at the catalog's embedding price.

Each input is its own exact cache entry in the tenant's space (the engine's cache, exact-only: no vector
index, no semantic matching): a batch whose inputs were all seen costs nothing, and one with a few new
inputs sends only those upstream and pays only for them. Budgets, the ledger and the metrics see an
embeddings request like a chat request (``task`` is ``embedding`` in the ledger).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from cache import reads, writes
from engine.access_log import note as access_note
from engine.controls import merge, options_from_headers, validate
from engine.doors._common import JSONBytes, decode_body
from engine.doors.embeddings_wire import (
    EmbeddingRoutes,
    EmbeddingsRequest,
    dimensions_of,
    encode_answer,
    inputs_of,
    request_decoder,
    scope_of,
)
from engine.errors import BudgetExceeded, ThriftyError, UpstreamError, translate
from engine.ledger import UsageRecord, new_request_id
from engine.limits import check_request_id, short
from engine.metrics import label
from engine.types import Meta
from models.catalog import embedding_models
from models.schema import EmbeddingEntry, Route
from models.tokens import estimate_tokens
from router.errors import Attempt, ProviderError
from router.providers.embeddings import Embedded
from router.types import ThriftyOptions

if TYPE_CHECKING:
    from engine.server import Proxy
    from engine.tracing import Trace


class EmbeddingCall:
    """One embeddings request's state: what it asked, what it got, what it cost."""

    def __init__(self, req: EmbeddingsRequest, entry: EmbeddingEntry, tenant: str, key_name: str | None) -> None:
        self.req, self.entry, self.tenant, self.key_name = req, entry, tenant, key_name
        self.meta = Meta(request_id=new_request_id())
        self.t0 = time.perf_counter_ns()
        self.upstream_ns = 0
        self.prompt_tokens = 0
        self.model = entry.id
        self.trace: Trace | None = None  # when tracing is on and this request is sampled

    @property
    def request(self) -> EmbeddingsRequest:  # what the tracer's sampler reads (``request.model``), as on Ctx
        return self.req


class EmbeddingsDoor:
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.engine = proxy.engine
        self._routes: EmbeddingRoutes | None = None

    @property
    def routes(self) -> EmbeddingRoutes:
        if self._routes is None:  # built on first use: reads the catalog file once
            self._routes = EmbeddingRoutes(embedding_models(), self.engine.dispatcher.providers,
                                           dict(self.engine.settings.raw.routes))
        return self._routes

    def served_models(self) -> list[EmbeddingEntry]:
        return self.routes.served()

    async def handle(self, request: Request) -> Response:
        from engine.server import error_response, meta_headers

        limits = self.proxy.limits
        started = time.perf_counter_ns()
        client_id = request.headers.get("x-request-id")
        tenant: str | None = None
        call: EmbeddingCall | None = None
        try:
            check_request_id(client_id, limits.max_field_chars)
            tenant, key_name = self.proxy.authenticate(request)
            req: EmbeddingsRequest = decode_body(await self.proxy.read_body(request), request_decoder, "embeddings")
            short(req.user, "user", limits.max_field_chars)
            options = merge(req.thrifty, options_from_headers(request.headers))
            validate(options, max_chars=limits.max_field_chars)
            options = options or ThriftyOptions()
            entry, routes = self.routes.resolve(req.model)
            dims = dimensions_of(entry, req.dimensions)
            texts = inputs_of(req.input)
            call = EmbeddingCall(req, entry, tenant, key_name)
            call.meta.simulated = self.engine.settings.simulated
            if self.engine.tracing is not None:
                call.trace = self.engine.tracing.begin(call, "embeddings")
            vectors = await self._vectors(call, texts, dims, routes, options)
        except Exception as exc:
            if call is not None:
                self._finish(call, exc)
            access_note(request.scope, tenant=tenant)
            return error_response(exc, call.meta.request_id if call else new_request_id(), started)
        self._finish(call, None)
        access_note(request.scope, meta=call.meta, tenant=tenant)
        body = encode_answer(vectors, call.model, req.encoding_format, call.prompt_tokens)
        return JSONBytes(body, headers=meta_headers(call.meta, client_id=client_id))

    async def _vectors(self, call: EmbeddingCall, texts: list[str], dims: int | None, routes: tuple[Route, ...],
                       options: Any) -> list[np.ndarray]:
        e, m = self.engine, call.meta
        cfg = e.settings.raw.cache
        mode = "off" if not cfg.enabled else (options.cache_mode or cfg.mode)
        owner, namespace = e.space_of(call.tenant, options.namespace)
        scopes = [scope_of(owner, namespace, call.entry.id, dims, t) for t in texts]
        found: list[np.ndarray | None] = [None] * len(texts)
        if reads(mode):
            for i, s in enumerate(scopes):
                hit = e.pending_exact(s) or e.cache.lookup_exact(s)  # in-flight first (see Pipeline.lookup)
                if hit is not None:
                    found[i] = np.frombuffer(hit.response, dtype="<f4")
                    m.saved_usd += hit.cost_usd
                    call.prompt_tokens += hit.tokens_in
                    call.model = hit.model or call.model
        missing = [i for i, v in enumerate(found) if v is None]
        m.cache = "bypass" if mode == "off" else ("miss" if missing else "exact")
        m.model, m.provider = call.entry.id, "cache"
        if missing:
            embedded = await self._fetch(call, [texts[i] for i in missing], dims, routes, options)
            share = [estimate_tokens(texts[i]) for i in missing]
            total = sum(share) or 1
            for j, i in enumerate(missing):
                found[i] = vec = embedded.vectors[j]
                if writes(mode):
                    cost = m.cost_usd * share[j] / total
                    # An exact-only scope stores no vector: nothing to search semantically.
                    e.cache_insert(scopes[i], None, vec.astype("<f4").tobytes(),  # type: ignore[arg-type]
                                   model=embedded.model, cost_usd=cost,
                                   ttl=options.ttl if options.ttl is not None else cfg.ttl_s,
                                   tokens_in=round(embedded.prompt_tokens * share[j] / total), tokens_out=0)
        return [v for v in found if v is not None]

    async def _fetch(self, call: EmbeddingCall, texts: list[str], dims: int | None, routes: tuple[Route, ...],
                     options: Any) -> Embedded:
        """The first route that answers; a failed one is counted and the next tried (no retries)."""
        e, m = self.engine, call.meta
        price = call.entry.price.input / 1e6
        verdict, reservation = await e.budgets.reserve(call.tenant, call.key_name,
                                                       price * sum(estimate_tokens(t) for t in texts))
        if verdict.action == "reject":
            e.metrics.budget_actions.labels(call.tenant, "reject").inc()
            raise BudgetExceeded(f"budget exhausted: {verdict.message}")
        errors: list[dict[str, Any]] = []
        try:
            deadline = e.deadline(options)
            for route in routes:
                provider = self.routes.providers[route.provider]
                t = time.perf_counter_ns()
                if call.trace is not None:  # this call carries its own span's traceparent
                    call.trace.on_call(route, call.entry.id)
                try:
                    embedded: Embedded = await provider.embed(texts, route.model, dims, deadline,
                                                              native=call.entry.dimensions, user=call.req.user)
                except ProviderError as exc:
                    e.metrics.upstream_errors.labels(route.deployment, type(exc).__name__).inc()
                    errors.append({"deployment": route.deployment, "error": str(exc), "status": exc.status})
                    _attempted(call, route.deployment, t, exc)
                    continue
                finally:
                    call.upstream_ns += time.perf_counter_ns() - t
                _attempted(call, route.deployment, t, None)
                m.attempts = len(errors) + 1
                m.provider, call.model = route.provider, embedded.model
                m.cost_usd = embedded.prompt_tokens * price
                call.prompt_tokens += embedded.prompt_tokens
                return embedded
        finally:
            e.budgets.settle(reservation, m.cost_usd)
        m.attempts = len(errors)
        raise UpstreamError(f"every route of {call.entry.id} failed: {errors[-1]['error']}", details=errors)

    def _finish(self, call: EmbeddingCall, error: BaseException | None) -> None:
        """Metrics and the ledger row, once per request, as the chat pipeline writes them."""
        e, m = self.engine, call.meta
        total = time.perf_counter_ns() - call.t0
        m.latency_ms, m.overhead_ms = total / 1e6, (total - call.upstream_ns) / 1e6
        err: ThriftyError | None = translate(error) if error is not None else None
        status = err.status if err is not None else 200
        mt = e.metrics
        mt.requests.labels(m.cache, label(m.model), label(m.provider), str(status)).inc()
        mt.cache_outcomes.labels(m.cache).inc()
        if m.cost_usd:
            mt.spend.labels(call.tenant, label(m.model), label(m.provider)).inc(m.cost_usd)
            mt.tokens.labels("prompt", label(m.model)).inc(call.prompt_tokens)
        if m.saved_usd:
            mt.saved.labels(call.tenant).inc(m.saved_usd)
        e.ledger.record(UsageRecord(
            request_id=m.request_id, ts=time.time(), tenant=call.tenant, virtual_key=call.key_name, worker=e.worker,
            cache=m.cache, status=status, route=call.req.model, model=m.model, provider=m.provider, task="embedding",
            prompt_tokens=call.prompt_tokens if m.cost_usd else 0, cost_usd=m.cost_usd, saved_usd=m.saved_usd,
            error_class=type(err).__name__ if err is not None else None, latency_ms=m.latency_ms,
            overhead_ms=m.overhead_ms, attempts=m.attempts))
        if call.trace is not None and e.tracing is not None:
            e.tracing.end(call, status=status, error=err, raw_error=None, response=None)


def _attempted(call: EmbeddingCall, deployment: str, t0: int, exc: ProviderError | None) -> None:
    """The trace's record of one upstream call (its CLIENT span's outcome); nothing when not traced."""
    if call.trace is None:
        return
    elapsed = (time.perf_counter_ns() - t0) / 1e9
    attempt = Attempt(deployment, elapsed, status=200) if exc is None else Attempt(
        deployment, elapsed, exc.kind, exc.status, str(exc))
    if call.trace.attempts is None:
        call.trace.attempts = []
    call.trace.attempts.append(attempt)
