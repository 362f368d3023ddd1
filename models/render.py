"""The catalog as a rich Table, for ``thrifty models`` (filters: capability, provider, vendor, max price)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table

from models.catalog import Catalog, blended_price
from models.schema import ModelEntry

_CAP_LETTERS = (("tools", "T"), ("vision", "V"), ("json_mode", "J"), ("reasoning", "R"), ("streaming", "S"))


def _tokens(n: int) -> str:
    return f"{n / 1_000_000:g}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 else str(n)


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
) -> Table:
    """Models sorted by blended price; ``task`` adds that task's quality prior as a column."""
    entries: list[ModelEntry] = sorted(
        catalog.filter(capability=capability, provider=provider, vendor=vendor, max_price=max_price), key=blended_price
    )
    filters = ", ".join(f"{k}={v}" for k, v in (("capability", capability), ("provider", provider), ("vendor", vendor),
                                                  ("max_price", max_price)) if v is not None)
    table = Table(title=f"thrifty models: {len(entries)} of {len(catalog)}" + (f" ({filters})" if filters else ""),
                  caption="prices: USD per 1M tokens; caps: T tools, V vision, J JSON, R reasoning, S streaming")
    for col, justify in (("model", "left"), ("vendor", "left"), ("in", "right"), ("out", "right"), ("cached", "right"),
                         ("context", "right"), ("max out", "right"), ("caps", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    if task:
        table.add_column(f"q:{task}", justify="right")
    table.add_column("routes", overflow="fold")
    table.add_column("price as of", justify="right")
    for e in entries:
        caps = "".join(letter for name, letter in _CAP_LETTERS if getattr(e.capabilities, name))
        routes = ", ".join(sorted({r.provider for r in e.routes}))
        row = [e.id, e.vendor, _price(e.price.input), _price(e.price.output), _price(e.price.cached_input),
               _tokens(e.context_window), _tokens(e.max_output), caps]
        if task:
            row.append(f"{e.quality.get(task, float('nan')):.2f}")
        row += [routes, e.price.as_of]
        table.add_row(*row)
    return table
