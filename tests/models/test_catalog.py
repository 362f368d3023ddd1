"""The shipped catalog, its validation, lookups, filters and user overrides."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from models import (
    TASKS,
    Catalog,
    CatalogError,
    ModelEntry,
    Price,
    Route,
    UnknownModelError,
    estimate_tokens,
    load_overrides,
)
from models.schema import Capabilities


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.default()


def _entry(**kw: Any) -> ModelEntry:
    base: dict[str, Any] = dict(id="m", vendor="v", price=Price(1.0, 2.0), context_window=1000, max_output=100,
                routes=(Route("p", "m"),))
    base.update(kw)
    return ModelEntry(**base)


def test_shipped_catalog_is_broad_and_dated(catalog: Catalog) -> None:
    assert len(catalog) >= 26
    assert len(catalog.vendors) >= 7
    for needed in ("gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini", "o3", "o4-mini", "gpt-5",
                   "gpt-5-mini", "gpt-5-nano", "claude-haiku-4-5", "gemini-2.5-pro", "gemini-2.5-flash-lite",
                   "llama-3.3-70b", "llama-4-maverick", "llama-4-scout", "mistral-large", "codestral", "deepseek-v3",
                   "deepseek-r1", "qwen3-235b", "qwen2.5-coder-32b"):
        assert needed in catalog, needed
    for e in catalog:
        assert e.price.as_of and e.price.source, e.id
        assert set(e.quality) == set(TASKS), e.id
        assert e.notes, e.id
    providers = set(catalog.providers)
    assert {"openai", "anthropic", "google", "mistral", "deepseek", "openrouter", "together", "portkey", "cortex", "ollama"} <= providers


def test_cortex_serves_the_documented_models(catalog: Catalog) -> None:
    cortex = {r.model for e in catalog for r in e.routes if r.provider == "cortex"}
    assert {"claude-3-5-sonnet", "llama3.1-70b", "mistral-large2"} <= cortex


def test_get_honours_aliases_and_unknown_names_fail(catalog: Catalog) -> None:
    assert catalog.get("deepseek-chat").id == "deepseek-v3"
    assert catalog.get("mistral-large2").id == "mistral-large"
    with pytest.raises(UnknownModelError, match="gpt-7"):
        catalog.get("gpt-7")


def test_filter_by_capability_provider_and_price(catalog: Catalog) -> None:
    vision = catalog.filter(capability="vision")
    assert vision and all(e.capabilities.vision for e in vision)
    cheap = catalog.filter(max_price=1.0)
    assert cheap and all((e.price.input + e.price.output) / 2 <= 1.0 for e in cheap)
    cortex = catalog.filter(provider="cortex", capability=["tools"])
    assert cortex and all(any(r.provider == "cortex" for r in e.routes) and e.capabilities.tools for e in cortex)
    with pytest.raises(CatalogError, match="telepathy"):
        catalog.filter(capability="telepathy")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (dict(price=Price(-1.0, 1.0)), "price.input"),
        (dict(context_window=10, max_output=100), "smaller than max_output"),
        (dict(routes=()), "routes is empty"),
        (dict(quality={"poetry": 0.5}), "not a task"),
        (dict(quality={"code": 1.5}), "outside"),
        (dict(routes=(Route("p", "m", price=Price(1.0, -2.0)),)), "routes\\[p\\].price.output"),
    ],
)
def test_validation_names_the_problem(bad: dict, match: str) -> None:
    with pytest.raises(CatalogError, match=match):
        Catalog([_entry(**bad)])


def test_duplicate_ids_and_alias_clashes_are_rejected() -> None:
    with pytest.raises(CatalogError, match="duplicate"):
        Catalog([_entry(), _entry()])
    with pytest.raises(CatalogError, match="alias"):
        Catalog([_entry(id="a", aliases=("x",)), _entry(id="b", aliases=("x",))])


def test_overrides_replace_and_add(catalog: Catalog) -> None:
    raw = {"models": [
        {"id": "gpt-4o-mini", "vendor": "openai", "price": {"input": 0.01, "output": 0.02}, "context_window": 128000,
         "max_output": 16384, "routes": [{"provider": "openai", "model": "gpt-4o-mini"}]},
        {"id": "my-local", "vendor": "me", "price": {"input": 0, "output": 0}, "context_window": 8192, "max_output": 2048,
         "routes": [{"provider": "ollama", "model": "llama3.2:3b"}], "capabilities": {"tools": True}},
    ]}
    merged = catalog.with_overrides(load_overrides(raw, "thrifty.yaml"))
    assert merged.get("gpt-4o-mini").price.input == 0.01
    assert merged.get("my-local").capabilities == Capabilities(tools=True)
    assert len(merged) == len(catalog) + 1
    assert merged.get("gpt-4o-mini").aliases == ()  # a replacing entry brings its own aliases, not the old ones
    assert "gpt-4o-mini-2024-07-18" in merged  # (the dated snapshot id still resolves, by the date rule)
    assert load_overrides(json.dumps(raw).encode(), "x.json")[1].id == "my-local"


def test_override_errors_name_the_key_and_the_source() -> None:
    raw = {"models": [{"id": "x", "vendor": "v", "price": {"input": 1, "output": 1, "currency": "EUR"},
                       "context_window": 10, "max_output": 5, "routes": [{"provider": "p", "model": "m"}]}]}
    with pytest.raises(CatalogError, match=r"thrifty\.yaml.*currency"):
        load_overrides(raw, "thrifty.yaml")
    with pytest.raises(CatalogError, match=r"other\.json"):
        load_overrides(b"{not json", "other.json")


def test_catalog_round_trips_through_its_schema(catalog: Catalog) -> None:
    for e in catalog:
        assert msgspec.json.decode(msgspec.json.encode(e), type=ModelEntry) == e


def test_token_estimate_is_monotone_and_sane() -> None:
    assert estimate_tokens("") == 0
    short = estimate_tokens("Hello world")
    assert 2 <= short <= 5
    prose = "The quick brown fox jumps over the lazy dog. " * 100
    assert 800 <= estimate_tokens(prose) <= 1600
    assert estimate_tokens(prose + "more") >= estimate_tokens(prose)
    assert estimate_tokens("数学" * 100) >= 150  # CJK costs about a token per character
