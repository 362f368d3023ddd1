"""Phase two of start-up: the rooms' runtime objects built from resolved settings.

This is the only module that knows the rooms' constructors; the pipeline talks to :class:`Components`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import numpy as np

from cache import (
    CacheConfig,
    Encoder,
    EntryMeta,
    HashingEncoder,
    MicroBatcher,
    SemanticCache,
    default_encoder,
)
from engine.config import Settings
from engine.errors import ConfigError, RequestError
from models.catalog import Catalog
from models.schema import ModelEntry, Route
from router import Constraints, Decision, Router, RoutingRule, load_rules
from router.deadline import Deadline
from router.dispatch import Dispatcher, DispatchPolicy
from router.errors import CircuitsOpen
from router.providers import HTTPProvider, build_providers
from router.types import ChatRequest, ThriftyOptions

EMBED_DIM = 384  # all-MiniLM-L6-v2; the router's classifier and predictor are fitted on this space


def _with_routes(catalog: Catalog, routes: Mapping[str, tuple[str, ...]], source: str) -> Catalog:
    """Add ``provider -> models`` routes to catalog entries (same model id on that provider)."""
    if not routes:
        return catalog
    extra: dict[str, list[Route]] = {}
    for provider, names in routes.items():
        ids = catalog.ids if "*" in names else names
        for name in ids:
            if name not in catalog:
                raise ConfigError(f"{source}: routes.{provider}: unknown model {name!r}")
            entry = catalog.get(name)
            extra.setdefault(entry.id, []).append(Route(provider=provider, model=entry.id))
    updated: list[ModelEntry] = []
    for model_id, new in extra.items():
        entry = catalog.get(model_id)
        known = {r.deployment for r in entry.routes}
        add = tuple(r for r in new if r.deployment not in known)
        updated.append(msgspec.structs.replace(entry, routes=(*add, *entry.routes)))
    return catalog.with_overrides(updated, source=source)


def build_catalog(settings: Settings) -> Catalog:
    raw = settings.raw
    catalog = Catalog.default()
    if raw.catalog.models:
        catalog = catalog.with_overrides(raw.catalog.models, source=settings.source)
    if raw.catalog.remove:
        keep = [m for m in catalog if m.id not in set(raw.catalog.remove)]
        catalog = Catalog(keep, source=settings.source)
    routes = dict(raw.routes)
    if settings.simulated:
        routes.setdefault("simulated", ("*",))
    return _with_routes(catalog, routes, settings.source)


def _bind_vendors(providers: Mapping[str, Any], catalog: Catalog) -> None:
    """Gateways whose headers depend on a model's vendor (the portkey preset) learn each route's vendor."""
    for name, provider in providers.items():
        if isinstance(provider, HTTPProvider):
            provider.bind_vendors({r.model: e.vendor for e in catalog for r in e.routes if r.provider == name})


def build_encoder(settings: Settings) -> Encoder:
    if settings.raw.cache.encoder == "hashing":
        return HashingEncoder(EMBED_DIM)
    return default_encoder("auto")


class Components:
    """The runtime parts of one Engine."""

    def __init__(self, settings: Settings, encoder: Encoder | None = None) -> None:
        raw = settings.raw
        self.settings = settings
        self.catalog = build_catalog(settings)
        self.providers = build_providers(settings.providers)
        _bind_vendors(self.providers, self.catalog)
        self.dispatcher = Dispatcher(self.providers, policy=DispatchPolicy(
            total_timeout=raw.dispatch.deadline_s, fallback=raw.dispatch.fallback))
        self._rules: tuple[RoutingRule, ...] = raw.routing.rules
        self.router = self._router(self._rules)
        self.encoder = encoder if encoder is not None else build_encoder(settings)
        self.batcher = MicroBatcher(self.encoder)

    def _router(self, rules: tuple[RoutingRule, ...]) -> Router:
        r = self.settings.raw.routing
        try:
            return Router(self.catalog, rules=rules, available_providers=set(self.providers),
                          policy=r.policy, quality_target=r.quality_target, fallbacks=r.fallbacks,
                          max_models=r.max_candidates)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{self.settings.source}: routing: {exc}") from exc

    # ------------------------------------------------------------------------------------------ cache
    def open_cache(self) -> SemanticCache:
        c = self.settings.raw.cache
        config = CacheConfig(max_entries=c.max_entries, max_bytes=c.max_bytes, eviction=c.eviction,
                             default_ttl_s=c.ttl_s, durable=c.durable)
        name = getattr(self.encoder, "name", type(self.encoder).__name__)
        return SemanticCache.open(self.settings.data_dir / "cache", name, self.encoder.dim, config,
                                  policy=self.hit_policy())

    def hit_policy(self) -> Any:
        """The cache's verifier from the config's preset and threshold."""
        from cache.policy import PRESETS, HitPolicy

        c = self.settings.raw.cache
        preset = PRESETS[c.policy]
        if c.threshold is not None:
            preset = msgspec.structs.replace(preset, threshold=c.threshold)
        return HitPolicy(preset)

    def reconfigure(self, settings: Settings) -> None:
        """Run-time changes (engine.overlay): the router again from the new routing settings. Raises
        ConfigError (nothing changed) when they do not build."""
        old, self.settings = self.settings, settings
        try:
            router = self._router(settings.raw.routing.rules)
        except ConfigError:
            self.settings = old
            raise
        self._rules, self.router = settings.raw.routing.rules, router

    def insert(self, cache: SemanticCache, scope: Any, vector: np.ndarray, payload: bytes, *, model: str,
               cost_usd: float, ttl: float | None, tokens_in: int, tokens_out: int) -> None:
        cache.insert(scope, vector, payload, EntryMeta(model=model, cost_usd=cost_usd, tokens_in=tokens_in,
                                                       tokens_out=tokens_out, ttl_s=ttl))

    async def embed(self, text: str) -> np.ndarray:
        return await self.batcher.encode_one(text)

    # ------------------------------------------------------------------------------------------ routing
    def rank(self, request: ChatRequest, vector: np.ndarray | None, *, tenant: str, options: ThriftyOptions,
             policy: str | None, remaining_budget: float | None) -> Decision:
        tenant_cfg = self.settings.raw.tenants.get(tenant)
        constraints = Constraints(
            tenant=tenant,
            allow_models=tenant_cfg.allow_models if tenant_cfg else (),
            deny_models=tenant_cfg.deny_models if tenant_cfg else (),
            max_cost_usd=options.max_cost_usd,
            budget_remaining_usd=remaining_budget,
            is_open=self.dispatcher.is_open,
            policy=policy,  # type: ignore[arg-type]
            quality_target=options.quality_target,
            # Without a vector (cache off, model pinned) there is nothing to classify: the hint or "chat".
            task=options.task or (None if vector is not None else "chat"),
        )
        if vector is None:
            vector = np.zeros(self.encoder.dim, dtype=np.float32)
        try:
            return self.router.rank(request, vector, constraints)
        except CircuitsOpen as exc:
            exc.retry_after = self.dispatcher.breakers.retry_after(exc.deployments)
            raise

    def deadline(self, options: ThriftyOptions | None = None) -> Deadline:
        """The request's deadline: the caller's limits (``thrifty.ttft_s/stall_s/deadline_s``) may shorten
        the operator's, never lengthen them (dispatch also caps TTFT and stall by the provider's own)."""
        total = self.settings.raw.dispatch.deadline_s
        if options is None:
            return Deadline(total)
        if options.deadline_s is not None:
            total = options.deadline_s if total is None else min(total, options.deadline_s)
        return Deadline(total, ttft=options.ttft_s, stall=options.stall_s)

    def open_circuits(self) -> int:
        return sum(1 for s in self.dispatcher.breakers.states().values() if s == "open")

    def rules(self) -> tuple[RoutingRule, ...]:
        return self._rules

    def set_rules(self, raw: Any) -> tuple[RoutingRule, ...]:
        if not isinstance(raw, list):
            raise RequestError("routing rules must be a JSON list of rule objects")
        try:
            rules = load_rules(raw, "admin API")
            router = self._router(rules)
        except (ValueError, ConfigError) as exc:
            raise RequestError(str(exc)) from exc
        self._rules, self.router = rules, router
        return rules


def build_components(settings: Settings, encoder: Encoder | None = None) -> Components:
    return Components(settings, encoder)
