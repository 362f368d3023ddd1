"""What a switch of model would have cost: the ledger's traffic re-priced with another model's catalog price.

    thrifty whatif --model claude-haiku-4.5 --since 7d [--tenant acme]

For every answered upstream request in the window (status < 400, not a cache hit) the counterfactual cost is

    (uncached prompt tokens x input price + cached prompt tokens x cached-input price
     + expected output tokens of the model for the request's task x output price) / 1e6

with the model's list price from the catalog (``models/catalog.py``) and its expected output length per task
(the router's own figure: the catalog's ``output_tokens``, else ``router.scoring.DEFAULT_OUTPUT_TOKENS``).
A second figure keeps each request's actual output length instead. Cache hits cost nothing in either world
(they are assumed to hit again); failed requests are left out and counted.

What it cannot know, and says: the other model's answers (their quality, and so retries, follow-ups and
feedback), its real output length on these prompts, its tokenizer (prompt counts are the logged model's),
and price changes over the window.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import msgspec

from models.catalog import Catalog
from models.schema import TASKS, ModelEntry
from router.scoring import DEFAULT_OUTPUT_TOKENS

CAVEAT = ("quality unknown: these are the logged prompts re-priced, not the other model's answers. Its "
          "answers could be better or worse (retries, follow-ups and feedback would change), its real output "
          "length on these prompts may differ from its expected length per task, prompt tokens are counted by "
          "the logged model's tokenizer, and cache hits are assumed to hit again.")
_M = Decimal(1_000_000)


class Group(msgspec.Struct):
    key: str
    requests: int = 0
    actual_usd: float = 0.0
    whatif_usd: float = 0.0  # the model's expected output length for the task
    whatif_same_length_usd: float = 0.0  # the request's actual output length


class WhatIf(msgspec.Struct):
    model: str
    price_in: float
    price_out: float
    price_cached_in: float | None
    price_as_of: str
    since: float | None
    tenant: str | None
    requests: int  # answered upstream requests re-priced
    hits: int  # cache hits (0 in both worlds)
    failed: int  # left out
    actual_usd: float
    whatif_usd: float
    whatif_same_length_usd: float
    by_model: list[Group]
    by_task: list[Group]
    caveat: str = CAVEAT

    @property
    def change(self) -> float | None:
        return self.whatif_usd / self.actual_usd - 1 if self.actual_usd else None


def _d(x: float | None) -> Decimal:
    return Decimal(repr(x)) if x is not None else Decimal(0)


def expected_output(entry: ModelEntry, task: str | None) -> int:
    t = task if task in TASKS else "chat"
    return entry.output_tokens.get(t, DEFAULT_OUTPUT_TOKENS[t])


def whatif(ledger: Any, catalog: Catalog, model: str, *, since: float | None = None,
           tenant: str | None = None) -> WhatIf:
    """Re-price the ledger's traffic (``since`` a unix time; ``tenant`` to narrow) as if ``model`` had answered."""
    entry = catalog.get(model)  # UnknownModelError (a 400 / a CLI message) names the catalog
    price = entry.price
    p_in, p_out = _d(price.input), _d(price.output)
    p_cached = _d(price.cached_input) if price.cached_input is not None else p_in
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append("ts >= ?")
        params.append(since)
    if tenant is not None:
        where.append("tenant = ?")
        params.append(tenant)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    rows = ledger.query(
        "SELECT model, task, cache, status, cost_usd, prompt_tokens, completion_tokens, cached_tokens "
        f"FROM requests{clause}", tuple(params))
    groups: dict[str, dict[str, Group]] = {"model": {}, "task": {}}
    total = [Decimal(0), Decimal(0), Decimal(0)]
    n = hits = failed = 0
    for r in rows:
        if r["status"] >= 400:
            failed += 1
            continue
        if r["cache"] in ("exact", "hit"):
            hits += 1
            continue
        cached = min(r["cached_tokens"] or 0, r["prompt_tokens"] or 0)
        prompt_part = ((r["prompt_tokens"] or 0) - cached) * p_in + cached * p_cached
        task = r["task"] if r["task"] in TASKS else "chat"
        cf = (prompt_part + expected_output(entry, task) * p_out) / _M
        cf_same = (prompt_part + (r["completion_tokens"] or 0) * p_out) / _M
        actual = _d(r["cost_usd"])
        n += 1
        for i, v in enumerate((actual, cf, cf_same)):
            total[i] += v
        for dim, key in (("model", r["model"] or "none"), ("task", task)):
            g = groups[dim].setdefault(key, Group(key))
            g.requests += 1
            g.actual_usd += float(actual)
            g.whatif_usd += float(cf)
            g.whatif_same_length_usd += float(cf_same)
    order = sorted  # stable: by actual spend, largest first

    def ranked(dim: str) -> list[Group]:
        return order(groups[dim].values(), key=lambda g: (-g.actual_usd, g.key))

    return WhatIf(model=entry.id, price_in=price.input, price_out=price.output, price_cached_in=price.cached_input,
                  price_as_of=price.as_of, since=since, tenant=tenant, requests=n, hits=hits, failed=failed,
                  actual_usd=float(total[0]), whatif_usd=float(total[1]), whatif_same_length_usd=float(total[2]),
                  by_model=ranked("model"), by_task=ranked("task"))


def _pct(new: float, old: float) -> str:
    return f"{new / old - 1:+.1%}" if old else "-"


def render(w: WhatIf) -> str:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    console = Console(width=130, record=True, file=StringIO())
    where = f" for tenant {w.tenant}" if w.tenant else ""
    console.print(f"what if {w.model} (${w.price_in:g} in / ${w.price_out:g} out per 1M tokens"
                  + (f", catalog price as of {w.price_as_of}" if w.price_as_of else "") + f") had answered{where}:")
    console.print(f"{w.requests} answered upstream requests re-priced; {w.hits} cache hits (cost 0 either way); "
                  f"{w.failed} failed requests left out")
    console.print(f"actual cost            ${w.actual_usd:.6f}")
    console.print(f"with {w.model} (expected output length per task)  ${w.whatif_usd:.6f}  "
                  f"({_pct(w.whatif_usd, w.actual_usd)})")
    console.print(f"with {w.model} (same output length as logged)     ${w.whatif_same_length_usd:.6f}  "
                  f"({_pct(w.whatif_same_length_usd, w.actual_usd)})")
    for dim, groups in (("model", w.by_model), ("task", w.by_task)):
        t = Table(title=f"by logged {dim}")
        for col in (dim, "requests", "actual (USD)", "what if (USD)", "change", "same length (USD)"):
            t.add_column(col, justify="left" if col == dim else "right")
        for g in groups:
            t.add_row(g.key, str(g.requests), f"{g.actual_usd:.6f}", f"{g.whatif_usd:.6f}",
                      _pct(g.whatif_usd, g.actual_usd), f"{g.whatif_same_length_usd:.6f}")
        console.print(t)
    console.print(f"caveat: {w.caveat}")
    return console.export_text()


def as_dict(w: WhatIf) -> dict[str, Any]:
    out = msgspec.to_builtins(w)
    change = w.change
    out["change"] = change if change is not None and math.isfinite(change) else None
    return out  # type: ignore[no-any-return]
