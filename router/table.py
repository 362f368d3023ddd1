"""Per-model and per-deployment arrays, precomputed once per catalog so that a decision is a few vector ops.

A deployment is one route of one model (``provider/model``). Deployments are stored grouped by model
(cheapest route first), so per-model reductions are ``reduceat`` over contiguous slices.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from models.catalog import Catalog
from models.schema import TASKS, ModelEntry, Route
from router.constraints import CAPABILITY_NAMES, Constraints, Requirements
from router.scoring import DEFAULT_OUTPUT_TOKENS, expected_cost

TASK_INDEX = {t: i for i, t in enumerate(TASKS)}


@dataclass(slots=True)
class Screen:
    """The outcome of the hard constraints for one request."""

    model_ok: np.ndarray  # (M,) bool
    dep_ok: np.ndarray  # (R,) bool
    dep_cost: np.ndarray  # (R,) USD
    dropped: list[tuple[str, str]]


class ModelTable:
    def __init__(self, catalog: Catalog, available_providers: Collection[str] | None = None) -> None:
        self.catalog = catalog
        self.entries: tuple[ModelEntry, ...] = tuple(catalog)
        self.index = {e.id: i for i, e in enumerate(self.entries)}
        m = len(self.entries)
        self.ctx = np.array([e.context_window for e in self.entries], dtype=np.int64)
        self.max_out = np.array([e.max_output for e in self.entries], dtype=np.int64)
        self.caps = {c: np.array([getattr(e.capabilities, c) for e in self.entries], dtype=bool) for c in CAPABILITY_NAMES}
        self.prior = np.array([[self._prior(e, t) for t in TASKS] for e in self.entries], dtype=np.float64).reshape(m, len(TASKS))
        self.out_tokens = np.array(
            [[e.output_tokens.get(t, DEFAULT_OUTPUT_TOKENS[t]) for t in TASKS] for e in self.entries], dtype=np.float64
        ).reshape(m, len(TASKS))
        deps: list[tuple[int, Route, float, float]] = []
        for i, e in enumerate(self.entries):
            routes = sorted(e.routes, key=lambda r, e=e: _route_price(e, r))  # type: ignore[misc]
            for r in routes:
                p = r.price or e.price
                deps.append((i, r, p.input, p.output))
        self.dep_model = np.array([d[0] for d in deps], dtype=np.int64)
        self.dep_route: tuple[Route, ...] = tuple(d[1] for d in deps)
        self.dep_name: tuple[str, ...] = tuple(r.deployment for r in self.dep_route)
        self.dep_in = np.array([d[2] for d in deps], dtype=np.float64)
        self.dep_out = np.array([d[3] for d in deps], dtype=np.float64)
        self.starts = np.searchsorted(self.dep_model, np.arange(m))
        self.ends = np.append(self.starts[1:], len(deps))
        self.starts_list: list[int] = self.starts.tolist()
        self.ends_list: list[int] = self.ends.tolist()
        avail = set(available_providers) if available_providers is not None else None
        self.simulated_only = avail == {"simulated"}
        self._avail = avail
        self.dep_available = np.array([avail is None or r.provider in avail for r in self.dep_route], dtype=bool)
        self.model_available = np.logical_or.reduceat(self.dep_available, self.starts)
        self.unavailable_reason = [
            f"no configured provider serves it (routes: {', '.join(sorted({r.provider for r in e.routes}))})"
            for e in self.entries
        ]

    @staticmethod
    def _prior(entry: ModelEntry, task: str) -> float:
        if task in entry.quality:
            return entry.quality[task]
        if entry.quality:
            return float(np.mean(list(entry.quality.values())))
        return 0.5

    def serves(self, provider: str, entry: ModelEntry) -> bool:
        """Whether ``provider`` is configured and has a route to ``entry``."""
        return (self._avail is None or provider in self._avail) and any(r.provider == provider for r in entry.routes)

    def mask_of(self, names: Collection[str]) -> np.ndarray:
        """Boolean mask of models named (ids or aliases); unknown names are ignored."""
        mask = np.zeros(len(self.entries), dtype=bool)
        for name in names:
            i = self.index.get(name)
            if i is None and name in self.catalog:
                i = self.index[self.catalog.get(name).id]
            if i is not None:
                mask[i] = True
        return mask

    def screen(
        self,
        req: Requirements,
        task: str,
        constraints: Constraints,
        allow: np.ndarray | None,
        deny: np.ndarray | None,
        max_cost: float | None,
    ) -> Screen:
        """Apply the request-level constraints and the cost limits; ``dropped`` names the first constraint
        that removed each model. Open circuits are checked later, only for the deployments about to be
        returned (``closed``), because the breaker is a callable and the catalog has ~100 deployments."""
        out_tok = self.out_tokens[:, TASK_INDEX[task]]
        if req.max_output is not None:
            out_tok = np.minimum(out_tok, req.max_output)
        dep_cost = expected_cost(req.prompt_tokens, out_tok[self.dep_model], self.dep_in, self.dep_out)
        need = req.prompt_tokens + (req.max_output or 1)
        tenant = f" of tenant {constraints.tenant}" if constraints.tenant else ""
        stages: list[tuple[np.ndarray, Callable[[int], str]]] = []
        if allow is not None:
            stages.append((allow, lambda i: "not in the allow list" + tenant))
        if deny is not None:
            stages.append((~deny, lambda i: "in the deny list" + tenant))
        for cap in req.capabilities:
            stages.append((self.caps[cap], lambda i, cap=cap: f"lacks capability {cap}"))  # type: ignore[misc]
        stages.append((self.ctx >= need, lambda i: f"context window {self.ctx[i]} < {need} tokens needed"))
        if req.max_output is not None:
            stages.append((self.max_out >= req.max_output, lambda i: f"max output {self.max_out[i]} < max_tokens {req.max_output}"))
        stages.append((self.model_available, lambda i: self.unavailable_reason[i]))
        ok = np.logical_and.reduce([m for m, _ in stages])
        dep_ok = self.dep_available & ok[self.dep_model]
        dep_stages: list[tuple[np.ndarray, str]] = []
        if max_cost is not None:
            dep_stages.append((dep_cost <= max_cost, f"ceiling ${max_cost:.6f}"))
        budget = constraints.budget_remaining_usd
        if budget is not None:
            dep_stages.append((dep_cost <= budget, f"remaining budget ${budget:.6f}"))
        final = dep_ok
        for mask, _ in dep_stages:
            final = final & mask
        alive = np.logical_or.reduceat(final, self.starts)
        dropped: list[tuple[str, str]] = []
        for i in np.flatnonzero(~alive).tolist():
            if not ok[i]:
                why = next(w(i) for m, w in stages if not m[i])
            else:
                sl = slice(self.starts[i], self.ends[i])
                cheapest = float(dep_cost[sl][dep_ok[sl]].min())
                limit = next(label for m, label in dep_stages if not (dep_ok[sl] & m[sl]).any())
                why = f"expected cost ${cheapest:.6f} > {limit}"
            dropped.append((self.entries[i].id, why))
        return Screen(alive, final, dep_cost, dropped)

    def closed(self, j: int, constraints: Constraints) -> bool:
        """Whether deployment ``j``'s circuit lets requests through."""
        name = self.dep_name[j]
        if name in constraints.open_deployments:
            return False
        return constraints.is_open is None or not constraints.is_open(name)


def _route_price(entry: ModelEntry, route: Route) -> float:
    p = route.price or entry.price
    return p.input + p.output
