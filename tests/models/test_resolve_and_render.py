"""Model names as clients send them (provider prefixes, dated snapshots, a gateway's own ids) resolve to
catalog entries; the catalog table filters on the price it shows and stays readable at 80 columns."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from models import Catalog, UnknownModelError, blended_price
from models.render import catalog_table


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.default()


@pytest.mark.parametrize(
    ("name", "model_id", "provider"),
    [
        ("gpt-4o-mini", "gpt-4o-mini", None),
        ("openai/gpt-4o-mini", "gpt-4o-mini", "openai"),
        ("gpt-4o-2024-11-20", "gpt-4o", None),  # not an alias: the date rule
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini", None),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet", None),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5", None),
        ("anthropic/claude-3-5-sonnet-20241022", "claude-3-5-sonnet", "anthropic"),
        ("anthropic/claude-sonnet-4.5", "claude-sonnet-4-5", "anthropic"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku", None),
        ("openrouter/anthropic/claude-sonnet-4.5", "claude-sonnet-4-5", "openrouter"),
        ("meta-llama/llama-3.3-70b-instruct", "llama-3.3-70b", None),  # OpenRouter's own id
        ("gpt-4.1", "gpt-4.1", None),  # dots are kept where the id has them
    ],
)
def test_client_names_resolve(catalog: Catalog, name: str, model_id: str, provider: str | None) -> None:
    resolved = catalog.resolve(name)
    assert (resolved.entry.id, resolved.provider) == (model_id, provider)
    assert name in catalog and catalog.get(name).id == model_id


@pytest.mark.parametrize("name", ["gpt-7", "openai/gpt-7", "nosuchgateway/gpt-4o", "gpt-4o-2024", "openai/"])
def test_unknown_names_still_fail(catalog: Catalog, name: str) -> None:
    assert name not in catalog
    with pytest.raises(UnknownModelError, match="unknown model"):
        catalog.get(name)


def _render(catalog: Catalog, width: int, **kw: object) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None)
    console.print(catalog_table(catalog, width=width, **kw))  # type: ignore[arg-type]
    return out.getvalue()


def test_max_price_filters_on_the_blend_it_shows(catalog: Catalog) -> None:
    text = _render(catalog, 200, max_price=0.5)
    kept = [e for e in catalog if blended_price(e) <= 0.5]
    assert kept and len(kept) < len(catalog)
    assert f"{len(kept)} of {len(catalog)}" in text and "blend" in text
    for e in catalog:
        assert (f" {e.id} " in text) == (e in kept)
    # gpt-5-nano: input 0.05 (far under 0.5) but blend 0.225: the blend is what decides, and is shown
    assert " 0.225 " in text


def test_80_columns_stay_readable(catalog: Catalog) -> None:
    text = _render(catalog, 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    for e in catalog:  # every id printed whole, never cut to "gpt-…"
        assert f" {e.id} " in text
    assert "…" not in text
    assert len(lines) < 4 * len(catalog)  # at most a few lines per model
