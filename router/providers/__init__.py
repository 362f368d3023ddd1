"""Providers: one module per wire format, built from config through a registry (kind -> class)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from router.errors import ConfigError
from router.providers.anthropic import AnthropicProvider
from router.providers.base import ChunkStream, HTTPProvider, Provider, parse_retry_after
from router.providers.config import (
    PRESETS,
    BreakerConfig,
    ProviderConfig,
    RetryPolicy,
    SimulatedConfig,
    Timeouts,
    decode_configs,
)
from router.providers.cortex import CortexProvider
from router.providers.openai import OpenAIProvider
from router.providers.simulated import SimulatedProvider

REGISTRY: dict[str, Callable[[ProviderConfig], Provider]] = {
    "openai": OpenAIProvider,
    "openai-compatible": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "cortex": CortexProvider,
    "simulated": SimulatedProvider,
}


def build_provider(config: ProviderConfig) -> Provider:
    factory = REGISTRY.get(config.kind)
    if factory is None:  # unreachable through decode_configs; guards hand-built configs
        raise ConfigError(f"provider {config.name!r}: unknown kind {config.kind!r}; known: {sorted(REGISTRY)}")
    return factory(config)


def build_providers(configs: Iterable[ProviderConfig]) -> dict[str, Provider]:
    """Phase two of config: runtime providers by name (keys read from the environment here, once)."""
    providers: dict[str, Provider] = {}
    for config in configs:
        if config.name in providers:
            raise ConfigError(f"provider name {config.name!r} is defined twice")
        providers[config.name] = build_provider(config)
    return providers


__all__ = [
    "PRESETS",
    "REGISTRY",
    "AnthropicProvider",
    "BreakerConfig",
    "ChunkStream",
    "CortexProvider",
    "HTTPProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderConfig",
    "RetryPolicy",
    "SimulatedConfig",
    "SimulatedProvider",
    "Timeouts",
    "build_provider",
    "build_providers",
    "decode_configs",
    "parse_retry_after",
]
