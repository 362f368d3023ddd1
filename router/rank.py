"""The router's decision: classify the task, apply rules and hard constraints, score, rank, explain."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import msgspec
import numpy as np

from models.catalog import Catalog
from models.schema import TASKS
from router.candidate import Candidate
from router.classify import TaskClassifier
from router.constraints import NO_CONSTRAINTS, Constraints, requirements
from router.errors import CircuitsOpen, NoCandidatesError, RankingError, UnknownModel
from router.predictor import QualityPredictor
from router.rules import RoutingRule
from router.scoring import POLICIES, balanced_score, order
from router.table import TASK_INDEX, ModelTable, Screen
from router.types import ChatRequest, Policy

AUTO = ("auto", "")


_OPEN = "circuit open: "  # the drop reason of a model whose every usable deployment is open

class Decision(msgspec.Struct):
    """A ranked list of candidates (best first) and why: the task, the policy, rules, dropped models."""

    candidates: list[Candidate]
    dropped: list[tuple[str, str]]
    task: str
    confidence: float
    policy: str
    rules: tuple[str, ...] = ()
    prompt_tokens: int = 0
    pinned: str | None = None
    quality_target: float | None = None

    @property
    def chosen(self) -> Candidate:
        return self.candidates[0]

    def explain(self) -> list[str]:
        """The decision as lines of text (``router.explain`` renders it as a table)."""
        lines = [f"task {self.task} (confidence {self.confidence:.2f}), policy {self.policy}"
                 + (f", target {self.quality_target:.2f}" if self.policy == "target" and self.quality_target is not None else "")
                 + (f", pinned {self.pinned}" if self.pinned else "")
                 + f", ~{self.prompt_tokens} prompt tokens"]
        lines += [f"rule: {r}" for r in self.rules]
        for n, c in enumerate(self.candidates, 1):
            lines.append(f"{n}. {c.deployment}: quality {c.predicted_quality:.3f}, expected ${c.expected_cost_usd:.6f}"
                         + (f" ({'; '.join(c.reasons)})" if c.reasons else ""))
        lines += [f"dropped {model}: {reason}" for model, reason in self.dropped]
        return lines


class Router:
    """``rank(request, vector, constraints) -> Decision``; everything per-catalog is precomputed here."""

    def __init__(
        self,
        catalog: Catalog,
        predictor: QualityPredictor | None = None,
        classifier: TaskClassifier | None = None,
        rules: Sequence[RoutingRule] = (),
        available_providers: Collection[str] | None = None,
        *,
        policy: Policy = "balanced",
        quality_target: float = 0.8,
        balance: float = 0.1,
        fallbacks: Mapping[str, Sequence[str]] | None = None,
        max_models: int = 5,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; policies are {', '.join(POLICIES)}")
        self.catalog = catalog
        self.table = ModelTable(catalog, available_providers)
        self.classifier = classifier if classifier is not None else TaskClassifier.default()
        self.rules = tuple(rules)
        self.policy: Policy = policy
        self.quality_target = quality_target
        self.balance = balance
        self.max_models = max_models
        for rule in self.rules:
            self._check_names(rule.prefer + rule.only + rule.deny, f"rule {rule.describe(0)}")
        self.fallbacks: dict[str, tuple[int, ...]] = {}
        for pinned, names in (fallbacks or {}).items():
            self._check_names((pinned, *names), f"fallbacks of {pinned}")
            self.fallbacks[self._resolve(pinned)] = tuple(self.table.index[self._resolve(n)] for n in names)
        self.predictor = predictor
        self._pred_idx = np.zeros(0, dtype=np.int64)
        self._pred_cols = np.zeros(0, dtype=np.int64)
        if predictor is not None:
            pairs = [(self.table.index[self._resolve(m)], j) for j, m in enumerate(predictor.models) if m in catalog]
            self._pred_idx = np.array([p[0] for p in pairs], dtype=np.int64)
            self._pred_cols = np.array([p[1] for p in pairs], dtype=np.int64)

    def _resolve(self, name: str) -> str:
        if name not in self.catalog:
            raise UnknownModel(f"unknown model {name!r}; known: {', '.join(self.catalog.ids)}")
        return self.catalog.get(name).id

    def _check_names(self, names: Sequence[str], where: str) -> None:
        for n in names:
            if n not in self.catalog:
                raise UnknownModel(f"{where}: unknown model {n!r}")

    # ------------------------------------------------------------------------------------------ ranking
    def rank(self, request: ChatRequest, vector: np.ndarray, constraints: Constraints = NO_CONSTRAINTS) -> Decision:
        opts = request.thrifty
        task, confidence = self._task(vector, constraints, opts.task if opts else None)
        rules = [(i, r) for i, r in enumerate(self.rules) if r.matches(task, constraints.tenant)]
        policy = constraints.policy or (opts.policy if opts else None)
        target = constraints.quality_target if constraints.quality_target is not None else (opts.quality_target if opts else None)
        for _, rule in rules:
            policy = policy or rule.policy
            target = target if target is not None else rule.quality_target
        policy = policy or self.policy
        target = self.quality_target if target is None else target
        allow, deny = self._lists(constraints, rules)
        max_cost = _min_opt(constraints.max_cost_usd, opts.max_cost_usd if opts else None)
        req = requirements(request, constraints.require)
        screen = self.table.screen(req, task, constraints, allow, deny, max_cost)
        quality = self._quality(vector, task)
        pinned = None if request.model in AUTO else request.model
        if pinned is not None:
            ranked = self._pinned(pinned, screen.model_ok, screen.dropped)
        else:
            ranked = self._ranked(policy, quality, screen, target, rules)
        limit = len(ranked) if pinned is not None else self.max_models
        candidates = self._candidates(ranked, quality, screen, task, policy, constraints, limit)
        if pinned is not None:
            candidates = self._via_prefix(pinned, candidates)
        if not candidates:
            # Models that passed every constraint but have only open circuits: the gateway is unavailable
            # for a while (503 + Retry-After), the request is not at fault (never a 400 no_route).
            opened = [n for _, why in screen.dropped if why.startswith(_OPEN) for n in why[len(_OPEN):].split(", ")]
            if opened:
                raise CircuitsOpen(opened, dropped=screen.dropped)
            raise NoCandidatesError("no model satisfies the request's constraints", screen.dropped)
        return Decision(candidates, screen.dropped, task, confidence, policy,
                        tuple(r.describe(i) for i, r in rules), req.prompt_tokens,
                        None if pinned is None else self._resolve(pinned), target)

    def _task(self, vector: np.ndarray, constraints: Constraints, hint: str | None) -> tuple[str, float]:
        hint = constraints.task or hint
        if hint is not None:
            if hint not in TASK_INDEX:
                raise RankingError(f"unknown task {hint!r}; tasks are {', '.join(TASKS)}")
            return hint, 1.0
        if vector.shape != (self.classifier.dim,):
            raise RankingError(f"prompt vector has shape {vector.shape}; the classifier expects ({self.classifier.dim},)")
        return self.classifier.predict(vector)

    def _lists(self, constraints: Constraints, rules: list[tuple[int, RoutingRule]]) -> tuple[np.ndarray | None, np.ndarray | None]:
        allow = self.table.mask_of(constraints.allow_models) if constraints.allow_models else None
        deny = self.table.mask_of(constraints.deny_models) if constraints.deny_models else None
        for _, rule in rules:
            if rule.only:
                only = self.table.mask_of(rule.only)
                allow = only if allow is None else allow & only
            if rule.deny:
                d = self.table.mask_of(rule.deny)
                deny = d if deny is None else deny | d
        return allow, deny

    def _quality(self, vector: np.ndarray, task: str) -> np.ndarray:
        quality = self.table.prior[:, TASK_INDEX[task]].copy()
        if self.predictor is not None and len(self._pred_idx):
            quality[self._pred_idx] = self.predictor.predict(vector)[self._pred_cols]
        return quality

    def _ranked(self, policy: str, quality: np.ndarray, screen: Screen, target: float,
                rules: list[tuple[int, RoutingRule]]) -> list[int]:
        survivors = np.flatnonzero(screen.model_ok)
        if not len(survivors):
            return []
        model_cost = np.minimum.reduceat(np.where(screen.dep_ok, screen.dep_cost, np.inf), self.table.starts)
        idx = survivors[order(policy, quality[survivors], model_cost[survivors], target=target, balance=self.balance)]
        ranked: list[int] = idx.tolist()
        preferred = [self.table.index[self.catalog.get(n).id] for _, r in rules for n in r.prefer]
        if preferred:
            ok = set(ranked)
            front = list(dict.fromkeys(i for i in preferred if i in ok))
            ranked = front + [i for i in ranked if i not in set(front)]
        return ranked

    def _pinned(self, pinned: str, model_ok: np.ndarray, dropped: list[tuple[str, str]]) -> list[int]:
        model_id = self._resolve(pinned)
        i = self.table.index[model_id]
        why = dict(dropped).get(model_id)
        hard = why is not None and not why.startswith(("circuit open", "expected cost"))
        if hard:
            raise NoCandidatesError(f"pinned model {model_id} cannot serve this request: {why}", [(model_id, str(why))])
        chain = [i, *self.fallbacks.get(model_id, ())]
        return [j for j in dict.fromkeys(chain) if model_ok[j]]

    def _via_prefix(self, pinned: str, candidates: list[Candidate]) -> list[Candidate]:
        """``openai/gpt-4o-mini`` is served by the provider named ``openai`` only. With the simulated
        provider alone (no real provider configured) it stands in for every provider, as for every model.
        A deployment that exists but was dropped (circuit open, cost cap) is reported as the others are."""
        entry, via = self.catalog.resolve(pinned)
        if via is None or self.table.simulated_only:
            return candidates
        kept = [c for c in candidates if c.route.provider == via]
        if not kept and not self.table.serves(via, entry):
            served = sorted({c.route.provider for c in candidates})
            raise NoCandidatesError(f"model {pinned!r} names provider {via!r}, which does not serve it here"
                                    + (f" (served by: {', '.join(served)})" if served else ""), [])
        return kept

    def _candidates(self, ranked: list[int], quality: np.ndarray, screen: Screen, task: str, policy: str,
                    constraints: Constraints, limit: int) -> list[Candidate]:
        """Candidates for the first ``limit`` ranked models that have a deployment with a closed circuit;
        models whose every deployment is open are added to ``screen.dropped``."""
        t = self.table
        dep_ok = screen.dep_ok.tolist()
        dep_cost = screen.dep_cost.tolist()
        starts, ends = t.starts_list, t.ends_list
        out: list[Candidate] = []
        models = 0
        for i in ranked:
            entry = t.entries[i]
            q = float(quality[i])
            why = (f"#{models + 1} under policy {policy}", f"predicted {task} quality {q:.3f}")
            added = False
            for j in range(starts[i], ends[i]):
                if dep_ok[j] and t.closed(j, constraints):
                    out.append(Candidate(entry, t.dep_route[j], q, dep_cost[j], why))
                    added = True
            if added:
                models += 1
                if models >= limit:
                    break
            else:
                names = [t.dep_name[j] for j in range(starts[i], ends[i]) if dep_ok[j]]
                screen.dropped.append((entry.id, f"{_OPEN}{', '.join(names)}"))
        return out


def _min_opt(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


__all__ = ["Decision", "Router", "balanced_score"]
