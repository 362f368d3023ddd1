"""Configuration, read in two phases (TensorZero's way).

Phase one decodes YAML (or a dict) into raw msgspec Structs that forbid unknown fields, so a typo is an
error naming the file and the key. Phase two (:func:`resolve`) builds frozen runtime settings: env vars
read, virtual keys indexed, defaults filled. With no config file and no provider keys in the
environment, thrifty runs on its embedded defaults with the ``simulated`` provider and says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from cache.adaptive import AdaptiveConfig
from cache.scope import namespace_problem
from cache.semantic import MAX_TTL_S
from engine.budgets import BudgetConfig
from engine.errors import ConfigError
from engine.experiments import ExperimentConfig
from engine.state.config import RateLimitConfig, StateConfig
from models.schema import ModelEntry
from router.providers.config import ProviderConfig
from router.rules import RoutingRule
from router.types import CacheMode, Policy


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    admin_key_env: str = "THRIFTY_ADMIN_KEY"  # the admin API is off when this variable is unset
    max_body_bytes: int = 4 * 1024 * 1024
    allow_anonymous: bool = False  # with tenants configured, serve key-less requests as tenant "default"
    # What one client may send (engine.limits, engine.http_limits): generous for real clients, small
    # enough that no single request can hold memory, a connection or a ledger row hostage.
    max_header_count: int = 100
    max_header_bytes: int = 64 * 1024  # request line and every header together; over it: 431
    max_json_depth: int = 64  # nesting of any JSON body; deeper is refused before decoding
    max_field_chars: int = 512  # model, x-request-id, namespace, user, task, metadata keys and values
    header_timeout_s: float = 10.0  # the whole request head must arrive within this (slowloris)
    body_timeout_s: float = 30.0  # the longest silence while a body is being sent (then 408)
    idle_timeout_s: float = 5.0  # a keep-alive connection with no new request is closed after this

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_header_count", "max_header_bytes", "max_json_depth", "max_field_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("header_timeout_s", "body_timeout_s", "idle_timeout_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ValueError(f"{name} must be a number of seconds in (0, 3600]")
    # One line per request on the ``thrifty.access`` logger (stderr by default), written off the request path.
    access_log: Literal["text", "json", "off"] = "text"


class ShadowConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``cache.shadow`` (engine/shadow.py): in these namespaces a would-be hit is not served; a fresh answer is,
    and the two are compared off the request path into a label."""

    namespaces: tuple[str, ...] = ()  # namespace names as requested ("faq"; "*" = every namespace)
    sample: float = 1.0  # fraction of those namespaces' requests shadowed
    # How a text answer is compared: "encoder" (cosine of the two answers with the cache's encoder, a match at
    # or above text_threshold) or "judge" (judge_model asked through the dispatcher, off the request path).
    compare: Literal["encoder", "judge"] = "encoder"
    text_threshold: float = 0.85
    judge_model: str | None = None
    max_pending: int = 256  # comparisons waiting at most; more are dropped (counted), never queued on a request

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample <= 1.0:
            raise ValueError(f"shadow.sample must be between 0 and 1, got {self.sample}")
        if not 0.0 <= self.text_threshold <= 1.0:
            raise ValueError(f"shadow.text_threshold must be between 0 and 1, got {self.text_threshold}")
        if self.compare == "judge" and not self.judge_model:
            raise ValueError("shadow.compare: judge needs shadow.judge_model (a catalog model id)")
        if self.max_pending < 1:
            raise ValueError("shadow.max_pending must be at least 1")


class NearMissConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``cache.near_miss``: after a miss whose best candidate scored less than ``margin`` under the threshold,
    its answer is compared with the fresh one off the request path; an approval is a label, and later requests
    as close to that entry are served."""

    enabled: bool = False
    margin: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.margin <= 0.5:
            raise ValueError(f"near_miss.margin must be in (0, 0.5], got {self.margin}")


class CacheConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    mode: CacheMode = "on"  # default per-request mode
    # The hit policy's preset (cache.policy.PRESETS, README "Hit policy"): "verified" (guards, then the
    # learned verifier) serves real and reworded LLM traffic alike; "precise"/"reach" trade hits for a
    # lower/higher false-hit bound; "cosine" runs no model. Older names still load.
    policy: Literal[
        "verified", "precise", "reach", "cosine", "strict", "balanced", "recall", "learned"
    ] = "verified"
    threshold: float | None = None  # None: the preset's measured threshold
    ttl_s: float | None = 7 * 24 * 3600.0
    max_entries: int | None = 1_000_000
    max_bytes: int | None = None
    eviction: str = "lru"
    encoder: Literal["default", "hashing"] = "default"  # "hashing": a tiny test encoder, no model
    cache_finish_reasons: tuple[str, ...] = ("stop", "tool_calls")
    # fsync every cache write? Off by default: a killed process loses nothing either way, and a power
    # loss costs at most the last few entries of a cache, which is cheaper than a disk flush per answer.
    durable: bool = False
    shadow: ShadowConfig = ShadowConfig()  # engine/shadow.py
    adaptive: AdaptiveConfig = AdaptiveConfig()  # cache/adaptive.py: per-entry thresholds under an error bound
    near_miss: NearMissConfig = NearMissConfig()

    def __post_init__(self) -> None:
        if self.ttl_s is not None and not 0 < self.ttl_s <= MAX_TTL_S:  # refuses nan, inf and 1e300
            raise ValueError(f"ttl_s must be a finite number of seconds in (0, {MAX_TTL_S:.0f}] or null, got {self.ttl_s}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1 (cosine, or probability for policy learned), got {self.threshold}")


class RoutingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    policy: Policy = "balanced"
    quality_target: float = 0.8
    rules: tuple[RoutingRule, ...] = ()
    fallbacks: dict[str, tuple[str, ...]] = {}  # pinned model -> models to fall back to
    max_candidates: int = 5  # how many models an "auto" request may fall back through


class DispatchConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    deadline_s: float = 120.0  # total, across every retry and fallback
    fallback: bool = True


class CatalogConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    models: tuple[ModelEntry, ...] = ()  # added, or replacing an entry of the same id
    remove: tuple[str, ...] = ()


class VirtualKeyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    key: str | None = None
    key_env: str | None = None
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None  # requests and tokens per minute (engine/state/ratelimit.py)


class TenantConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    keys: tuple[VirtualKeyConfig, ...] = ()
    # The tenant's default cache namespace: a sub-space of the tenant, like any requested namespace.
    namespace: str | None = None
    # Namespaces this tenant shares with every other tenant granted the same name (one space for all).
    shared_namespaces: tuple[str, ...] = ()
    allow_models: tuple[str, ...] = ()
    deny_models: tuple[str, ...] = ()
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None  # requests and tokens per minute (engine/state/ratelimit.py)

    def __post_init__(self) -> None:
        for name in (self.namespace, *self.shared_namespaces):
            problem = namespace_problem(name) if name is not None else None
            if problem:
                raise ValueError(f"namespace {name!r}: {problem}")


class LedgerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # How often the writer commits queued rows to SQLite. With the journal on, a killed process loses
    # no completed row; a power loss can lose the rows of about one interval.
    flush_interval_s: float = 0.05
    journal: bool = True

    def __post_init__(self) -> None:
        if not 0.001 <= self.flush_interval_s <= 60:  # also refuses nan and inf
            raise ValueError(f"flush_interval_s must be between 0.001 and 60 seconds, got {self.flush_interval_s}")


class ExportConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # The scheduled usage export (engine/_export_schedule.py): hourly files in ``dir`` (relative to
    # data_dir), off while dir is unset.
    dir: str | None = None
    format: Literal["parquet", "csv", "jsonl"] = "parquet"
    every: Literal["hour"] = "hour"
    delay_s: float = 60.0  # how long after an hour ends its file is written (late rows land first)
    catch_up_hours: int = 168  # missed hours written after a restart, at most this far back

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s <= 3600:
            raise ValueError(f"delay_s must be between 0 and 3600 seconds, got {self.delay_s}")
        if not 1 <= self.catch_up_hours <= 24 * 366:
            raise ValueError(f"catch_up_hours must be between 1 and 8784, got {self.catch_up_hours}")


class TracingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # OpenTelemetry traces (engine/tracing.py): exporter, endpoint, sampler and service name come from the
    # standard OTEL_* environment variables; prompt and answer text only with log_content.
    enabled: bool = False


class RawConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    data_dir: str = ".thrifty"
    log_content: bool = False
    server: ServerConfig = ServerConfig()
    providers: tuple[ProviderConfig, ...] = ()
    # Extra routes, as data: provider name -> the catalog models it serves under their own ids ("*" = all).
    # For gateways and local servers that speak for many models (a vLLM box, a test upstream).
    routes: dict[str, tuple[str, ...]] = {}
    catalog: CatalogConfig = CatalogConfig()
    routing: RoutingConfig = RoutingConfig()
    dispatch: DispatchConfig = DispatchConfig()
    cache: CacheConfig = CacheConfig()
    tenants: dict[str, TenantConfig] = {}
    ledger: LedgerConfig = LedgerConfig()
    export: ExportConfig = ExportConfig()
    tracing: TracingConfig = TracingConfig()
    # Shared state across replicas (engine/state): "redis://host:port/0" or a mapping (StateConfig).
    state: str | StateConfig | None = None
    # A/B splits of traffic between arms (engine/experiments.py, README "Experiments").
    experiments: tuple[ExperimentConfig, ...] = ()


# Providers enabled automatically, with no config file, when their key is in the environment.
AUTO_PROVIDERS: tuple[tuple[str, str, str, str | None], ...] = (
    ("openai", "openai", "OPENAI_API_KEY", None),
    ("anthropic", "anthropic", "ANTHROPIC_API_KEY", None),
    ("openrouter", "openai-compatible", "OPENROUTER_API_KEY", "openrouter"),
    ("together", "openai-compatible", "TOGETHER_API_KEY", "together"),
)


class KeyInfo(msgspec.Struct, frozen=True):
    tenant: str
    name: str


class Settings(msgspec.Struct, frozen=True):
    """The resolved, runtime form of the config."""

    raw: RawConfig
    source: str
    data_dir: Path
    providers: tuple[ProviderConfig, ...]
    simulated: bool  # True when no real provider is configured
    keys: dict[str, KeyInfo]  # virtual key -> tenant and key name
    budgets: dict[str, BudgetConfig]  # "tenant:x" / "key:y" -> budget
    admin_key: str | None
    notes: tuple[str, ...]  # what start-up should say
    state: StateConfig | None = None  # shared state (Redis); None: everything local
    rate_limits: dict[str, RateLimitConfig] = {}  # "tenant:x" / "key:y" -> limit


def _error_path(exc: msgspec.ValidationError) -> str:
    return str(exc)


def load_raw(source: str | Path | dict[str, Any] | None) -> tuple[RawConfig, str]:
    """Phase one. ``source`` is a YAML path, a dict, or None (THRIFTY_CONFIG, else embedded defaults)."""
    if source is None:
        env = os.environ.get("THRIFTY_CONFIG")
        if not env:
            return RawConfig(), "embedded defaults"
        source = env
    if isinstance(source, dict):
        data: Any = source
        name = "config dict"
    else:
        path = Path(source)
        name = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        except RecursionError as exc:
            raise ConfigError(f"{path}: nested too deeply to read") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return msgspec.convert(data, RawConfig), name
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{name}: {_error_path(exc)}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{name}: nested too deeply to read") from exc


def _providers(raw: RawConfig) -> tuple[tuple[ProviderConfig, ...], bool, list[str]]:
    notes: list[str] = []
    if raw.providers:
        return raw.providers, all(p.kind == "simulated" for p in raw.providers), notes
    found = [
        ProviderConfig(name=name, kind=kind, api_key_env=env, preset=preset)  # type: ignore[arg-type]
        for name, kind, env, preset in AUTO_PROVIDERS
        if os.environ.get(env)
    ]
    if found:
        notes.append("providers from the environment: " + ", ".join(p.name for p in found))
        return tuple(found), False, notes
    notes.append(
        "no config and no provider keys: running on embedded defaults with the SIMULATED provider "
        "(answers are simulated, not from a real model)"
    )
    return (ProviderConfig(name="simulated", kind="simulated"),), True, notes


def _keys(raw: RawConfig, source: str) -> tuple[dict[str, KeyInfo], dict[str, BudgetConfig]]:
    keys: dict[str, KeyInfo] = {}
    budgets: dict[str, BudgetConfig] = {}
    for tenant, cfg in raw.tenants.items():
        if cfg.budget is not None:
            budgets[f"tenant:{tenant}"] = cfg.budget
        for vk in cfg.keys:
            value = vk.key if vk.key is not None else os.environ.get(vk.key_env or "")
            if not value:
                raise ConfigError(f"{source}: tenants.{tenant}.keys[{vk.name}]: set `key` or a `key_env` "
                                  f"that names a set environment variable")
            if value in keys:
                raise ConfigError(f"{source}: tenants.{tenant}.keys[{vk.name}]: the same key is used twice")
            keys[value] = KeyInfo(tenant, vk.name)
            if vk.budget is not None:
                budgets[f"key:{vk.name}"] = vk.budget
    return keys, budgets


def resolve(raw: RawConfig, source: str) -> Settings:
    """Phase two: runtime settings with references resolved."""
    providers, simulated, notes = _providers(raw)
    names = [p.name for p in providers]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: providers: duplicate provider names in {names}")
    keys, budgets = _keys(raw, source)
    data_dir = Path(os.environ.get("THRIFTY_DATA_DIR", raw.data_dir)).expanduser()
    state = _state(raw, source)
    return Settings(
        raw=raw,
        source=source,
        data_dir=data_dir,
        providers=providers,
        simulated=simulated,
        keys=keys,
        budgets=budgets,
        admin_key=os.environ.get(raw.server.admin_key_env) or None,
        notes=tuple(notes),
        state=state,
        rate_limits=_rate_limits(raw),
    )


def _state(raw: RawConfig, source: str) -> StateConfig | None:
    """``state`` as a StateConfig; ``THRIFTY_REDIS_URL`` sets or overrides its url."""
    env = os.environ.get("THRIFTY_REDIS_URL")
    state = raw.state
    try:
        if isinstance(state, str):
            state = StateConfig(url=state)
        if env:
            state = StateConfig(url=env) if state is None else msgspec.structs.replace(state, url=env)
    except ValueError as exc:
        raise ConfigError(f"{source}: state: {exc}" if not env else f"THRIFTY_REDIS_URL: {exc}") from exc
    return state


def _rate_limits(raw: RawConfig) -> dict[str, RateLimitConfig]:
    out: dict[str, RateLimitConfig] = {}
    for tenant, cfg in raw.tenants.items():
        if cfg.rate_limit is not None:
            out[f"tenant:{tenant}"] = cfg.rate_limit
        out.update({f"key:{vk.name}": vk.rate_limit for vk in cfg.keys if vk.rate_limit is not None})
    return out


def load(source: str | Path | dict[str, Any] | None = None) -> Settings:
    """Both phases, with the data dir's run-time overlay (``engine.overlay``) merged over the config."""
    from engine.overlay import apply_file

    raw, name = load_raw(source)
    raw, note = apply_file(raw)
    settings = resolve(raw, name)
    return msgspec.structs.replace(settings, notes=(*settings.notes, note)) if note else settings
