"""The catalog as a rich Table, for ``thrifty models`` (filters: capability, provider, vendor, max price)."""

from __future__ import annotations

from collections.abc import Iterable

from rich import box
from rich.table import Table

from models.catalog import Catalog, blended_price
from models.schema import ModelEntry

_CAP_LETTERS = (("tools", "T"), ("vision", "V"), ("json_mode", "J"), ("reasoning", "R"), ("streaming", "S"))


def _tokens(n: int) -> str:
    return f"{n / 1_000_000:.3g}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 else str(n)


def _price(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}".rstrip("0").rstrip(".")


def catalog_table(
    catalog: Catalog,
    *,
    capability: str | Iterable[str] | None = None,
    provider: str | None = None,
    vendor: str | None = None,
    max_price: float | None = None,
    task: str | None = None,
    width: int = 120,
) -> Table:
    """Models sorted by blended price; ``task`` adds that task's quality prior as a column. Under 120
    columns of ``width`` the vendor, cached price, max output and price date are left out, so 80 columns stay
    readable."""
    entries: list[ModelEntry] = sorted(
        catalog.filter(capability=capability, provider=provider, vendor=vendor, max_price=max_price), key=blended_price
    )
    filters = ", ".join(f"{k}={v}" for k, v in (("capability", capability), ("provider", provider), ("vendor", vendor),
                                                  ("max_price", max_price)) if v is not None)
    wide = width >= 120
    table = Table(title=f"thrifty models: {len(entries)} of {len(catalog)}" + (f" ({filters})" if filters else ""),
                  caption="USD per 1M tokens; blend = (in + out) / 2, what --max-price filters on; "
                          "caps: T tools, V vision, J JSON, R reasoning, S streaming",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("model", no_wrap=True)
    if wide:
        table.add_column("vendor", no_wrap=True)
    for col in ("in", "out", "blend") + (("cached", "context", "max out") if wide else ("context",)):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("caps", no_wrap=True)
    if task:
        table.add_column(f"q:{task}", justify="right", no_wrap=True)
    table.add_column("routes", ratio=1)
    if wide:
        table.add_column("price as of", justify="right", no_wrap=True)
    for e in entries:
        caps = "".join(letter for name, letter in _CAP_LETTERS if getattr(e.capabilities, name))
        routes = ", ".join(sorted({r.provider for r in e.routes}))
        row = [e.id] + ([e.vendor] if wide else [])
        row += [_price(e.price.input), _price(e.price.output), _price(blended_price(e))]
        row += ([_price(e.price.cached_input), _tokens(e.context_window), _tokens(e.max_output)] if wide
                else [_tokens(e.context_window)])
        row.append(caps)
        if task:
            row.append(f"{e.quality.get(task, float('nan')):.2f}")
        row.append(routes)
        if wide:
            row.append(e.price.as_of)
        table.add_row(*row)
    return table
