"""Provider configuration: decoded strictly (unknown keys are errors), then built into providers.

Gateways (OpenRouter, Portkey, Together, Helicone, vLLM, Ollama, llama.cpp, Baseten, Modal) are DATA:
a preset is a base URL plus header templates applied to the OpenAI-compatible provider. Header
templates may use ``{api_key}`` and ``{env:NAME}``; values are resolved once, at build time.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import msgspec

from router.errors import ConfigError

Kind = Literal["openai", "openai-compatible", "anthropic", "cortex", "simulated"]
Preset = Literal[
    "openrouter", "portkey", "together", "helicone", "vllm", "ollama", "llamacpp", "baseten", "modal"
]


class Timeouts(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    connect: float = 5.0
    read: float = 60.0  # longest wait for bytes of a non-streaming body
    total: float | None = 120.0  # one attempt, end to end
    ttft: float | None = 30.0  # a stream's first content chunk
    stall: float | None = 30.0  # silence between two stream chunks


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    attempts: int = 3  # tries per deployment (1 = no retry)
    backoff_base: float = 0.1  # seconds; doubled per retry, full jitter
    backoff_max: float = 4.0
    max_retry_after: float = 30.0  # a longer Retry-After moves on to the next candidate
    # A read / first-token timeout moves on to the next candidate at once: a deployment that did not
    # answer in time rarely does on a second try, and waiting again costs the caller another timeout.
    retry_on_timeout: bool = False
    max_bad_events: int = 2  # undecodable SSE events skipped per stream before the stream fails


class BreakerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    consecutive_failures: int = 5
    failure_rate: float = 0.5  # over the last ``window`` calls, once ``min_calls`` were seen
    window: int = 20
    min_calls: int = 10
    cooldown: float = 30.0  # seconds open before one half-open probe


class SimulatedConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    latency_ms: tuple[float, float] = (20.0, 200.0)  # (min, max); (0, 0) for benchmarks
    chunk_chars: int = 16
    answer_words: int = 40


class ProviderConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    kind: Kind
    base_url: str | None = None
    api_key_env: str | None = None  # the NAME of an environment variable, never the key itself
    headers: dict[str, str] = {}
    extra_body: dict[str, Any] = {}  # merged into every request body (e.g. OpenRouter's ``provider``)
    preset: Preset | None = None
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    max_connections: int = 256
    timeouts: Timeouts = Timeouts()
    retries: RetryPolicy = RetryPolicy()
    breaker: BreakerConfig = BreakerConfig()
    simulated: SimulatedConfig = SimulatedConfig()
    auth_token_type: str | None = None  # Cortex: KEYPAIR_JWT, PROGRAMMATIC_ACCESS_TOKEN, OAUTH
    anthropic_version: str = "2023-06-01"
    params: dict[str, str] = {}  # preset template parameters, e.g. {"site_url": ..., "app_name": ...}
    # A gateway that calls the vendor with the caller's key (Portkey without virtual keys): model vendor ->
    # the NAME of the environment variable holding that vendor's key, sent per request (``{vendor_key}``).
    vendor_keys: dict[str, str] = {}


class PresetSpec(msgspec.Struct, frozen=True):
    base_url: str | None
    headers: dict[str, str]
    auth_header: str | None = "Authorization"  # None: the preset puts the key in its own header
    auth_scheme: str = "Bearer "
    # Headers that depend on the model's vendor, filled once per route: ``{vendor}`` is the gateway's name
    # for the vendor (``vendor_slugs``, else thrifty's), ``{vendor_key}`` that vendor's key (``vendor_keys``).
    # A header whose values are missing, or that the static headers already set, is left out.
    route_headers: dict[str, str] = {}
    vendor_slugs: dict[str, str] = {}
    route_headers_unless: str | None = None  # a static header that makes the route headers moot


PRESETS: dict[str, PresetSpec] = {
    "openrouter": PresetSpec(
        "https://openrouter.ai/api/v1",
        {"HTTP-Referer": "{param:site_url}", "X-Title": "{param:app_name}"},
    ),
    # https://portkey.ai/docs/api-reference/inference-api/headers: the Portkey key in x-portkey-api-key,
    # and either a virtual key (params.virtual_key) or x-portkey-provider + the vendor's own key as
    # ``Authorization: Bearer`` (vendor_keys), chosen per model vendor.
    "portkey": PresetSpec(
        "https://api.portkey.ai/v1",
        {
            "x-portkey-api-key": "{api_key}",
            "x-portkey-virtual-key": "{param:virtual_key}",
            "x-portkey-provider": "{param:provider}",
        },
        auth_header=None,
        route_headers={"x-portkey-provider": "{vendor}", "Authorization": "Bearer {vendor_key}"},
        vendor_slugs={"mistral": "mistral-ai"},  # the vendors the catalog routes through Portkey: openai,
        # anthropic, google and mistral; Portkey names the last "mistral-ai"
        route_headers_unless="x-portkey-virtual-key",  # a virtual key carries the provider and its key
    ),
    "together": PresetSpec("https://api.together.xyz/v1", {}),
    "helicone": PresetSpec(
        "https://oai.helicone.ai/v1", {"Helicone-Auth": "Bearer {env:HELICONE_API_KEY}"}
    ),
    "vllm": PresetSpec("http://127.0.0.1:8000/v1", {}),
    "ollama": PresetSpec("http://127.0.0.1:11434/v1", {}),
    "llamacpp": PresetSpec("http://127.0.0.1:8080/v1", {}),
    "baseten": PresetSpec(None, {}, auth_scheme="Api-Key "),  # per-deployment URL; set base_url
    "modal": PresetSpec(None, {}),  # per-app URL; set base_url
}

DEFAULT_BASE_URLS: dict[str, str | None] = {
    "openai": "https://api.openai.com/v1",
    "openai-compatible": None,
    "anthropic": "https://api.anthropic.com",
    "cortex": None,  # https://<account>.snowflakecomputing.com
    "simulated": None,
}

_config_decoder = msgspec.json.Decoder(list[ProviderConfig])


def decode_configs(raw: bytes | list[dict[str, Any]], *, source: str = "config") -> list[ProviderConfig]:
    """Phase one: strict decoding; a typo names the key and the source."""
    try:
        if isinstance(raw, bytes | bytearray | str):
            return _config_decoder.decode(raw)
        return msgspec.convert(raw, list[ProviderConfig])
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: providers: {exc}") from exc


def read_api_key(config: ProviderConfig) -> str | None:
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env)
    if not key:
        raise ConfigError(
            f"provider {config.name!r}: environment variable {config.api_key_env} (api_key_env) is not set"
        )
    return key


def resolve_template(template: str, *, api_key: str | None, config: ProviderConfig) -> str | None:
    """Fill a header template; None when a referenced parameter is absent (the header is then omitted)."""
    out = template
    if "{api_key}" in out:
        if api_key is None:
            return None
        out = out.replace("{api_key}", api_key)
    sources = {"env": os.environ, "param": config.params}
    for kind, values in sources.items():
        marker = "{" + kind + ":"
        while marker in out:
            start = out.index(marker)
            end = out.index("}", start)
            value = values.get(out[start + len(marker) : end])
            if value is None:
                return None
            out = out[:start] + value + out[end + 1 :]
    return out


def auth_headers(config: ProviderConfig, api_key: str | None, *, scheme: str = "Bearer ") -> dict[str, str]:
    """Static headers for an OpenAI-style provider: auth, the preset's templates, then the user's headers."""
    spec = PRESETS.get(config.preset) if config.preset else None
    headers: dict[str, str] = {}
    auth_header = spec.auth_header if spec else "Authorization"
    if spec is not None:
        scheme = spec.auth_scheme
    if api_key is not None and auth_header is not None:
        headers[auth_header] = scheme + api_key
    templates = dict(spec.headers) if spec else {}
    templates.update(config.headers)
    for name, template in templates.items():
        value = resolve_template(template, api_key=api_key, config=config)
        if value is not None:
            headers[name] = value
    return headers


def vendor_keys(config: ProviderConfig) -> dict[str, str]:
    """The vendors' keys a gateway forwards (read once, at build time); a named variable must be set."""
    keys = {}
    for vendor, env in config.vendor_keys.items():
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"provider {config.name!r}: environment variable {env} (vendor_keys.{vendor}) is not set")
        keys[vendor] = value
    return keys


def route_headers(config: ProviderConfig, vendor: str, keys: dict[str, str], static: dict[str, str]) -> dict[str, str]:
    """The preset's per-vendor headers for a model of ``vendor`` (empty when the preset has none)."""
    spec = PRESETS.get(config.preset) if config.preset else None
    if spec is None or not spec.route_headers:
        return {}
    taken = {k.lower() for k in static}
    if spec.route_headers_unless is not None and spec.route_headers_unless.lower() in taken:
        return {}
    values = {"{vendor}": spec.vendor_slugs.get(vendor, vendor), "{vendor_key}": keys.get(vendor)}
    out: dict[str, str] = {}
    for name, template in spec.route_headers.items():
        if name.lower() in taken:
            continue
        value: str | None = template
        for marker, fill in values.items():
            if value is not None and marker in value:
                value = None if fill is None else value.replace(marker, fill)
        if value is not None:
            out[name] = value
    return out


def base_url_of(config: ProviderConfig) -> str:
    url = config.base_url
    if url is None and config.preset is not None:
        url = PRESETS[config.preset].base_url
    if url is None:
        url = DEFAULT_BASE_URLS.get(config.kind)
    if url is None:
        raise ConfigError(f"provider {config.name!r}: base_url is required for kind {config.kind!r}")
    return url.rstrip("/")
