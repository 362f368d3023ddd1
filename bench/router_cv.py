"""Choosing the router's predictor on the train part only: repeated k-fold cross-validation of routing.

Log loss is the wrong yardstick here: it rewards predicting every model's accuracy well, while routing
only needs the *difference* between the cheap model and the strong one to be right, per prompt, and a
feature that sharpens the first can blur the second (structure features did exactly that on
RouterBench; see the report). So each candidate is scored the way the router is judged: out-of-fold
P(correct) for every train prompt (k folds, repeated over several random fold assignments because one
assignment is noisy), swept over λ in ``P - λ·cost``, and the cost share at 95 % of the best single
model's quality (raw and on the hull) is read off. The test part is never touched.

The candidates are two families, each over its one knob: ``GroupLogisticPredictor`` over its L2 strength
and the k-NN baseline over k. The baseline is tuned by the same cross-validation as the predictor it is
compared with, so the comparison on the test part is fair, and the family whose best candidate wins
here is the one the evaluation ships.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from bench.router_data import RoutingSet
from router.predictor import GroupLogisticPredictor, KNNPredictor, QualityPredictor

GROUP_L2 = (1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0)
KNN_K = (20, 40, 80, 150, 300)


@dataclass(frozen=True)
class Candidate:
    """One predictor setting: a family ("group_logistic", "knn") and the value of its knob."""

    family: str
    param: float
    fit: Callable[[np.ndarray, RoutingSet], QualityPredictor]

    @property
    def name(self) -> str:
        return f"{self.family} {'l2' if self.family == 'group_logistic' else 'k'}={self.param:g}"


@dataclass(frozen=True)
class CVScore:
    """Mean (and spread over fold assignments) of one candidate's routing figures on the train part."""

    name: str
    family: str
    param: float
    cost_share_at_95: float
    cost_share_at_95_hull: float
    apgr: float
    log_loss: float
    spread_95: float
    never: int  # fold assignments whose curve never reached 95 %

    @property
    def criterion(self) -> float:
        return 0.5 * (self.cost_share_at_95 + self.cost_share_at_95_hull)


def to_rows(x: np.ndarray, data: RoutingSet) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Matrix form (prompts × models) to the predictors' row form (one row per prompt and model)."""
    n, m = data.correct.shape
    return np.repeat(x, m, axis=0), [data.models[j] for _ in range(n) for j in range(m)], data.correct.reshape(-1)


def fit_group(x: np.ndarray, data: RoutingSet, l2: float) -> GroupLogisticPredictor:
    m = len(data.models)
    return GroupLogisticPredictor.fit(*to_rows(x, data), groups=np.repeat(data.groups, m).tolist(), l2=l2, folds=1)


def fit_knn(x: np.ndarray, data: RoutingSet, k: int) -> KNNPredictor:
    return KNNPredictor.fit(*to_rows(x, data), k=k)


def candidates(l2_grid: Sequence[float] = GROUP_L2, k_grid: Sequence[int] = KNN_K) -> list[Candidate]:
    """The shipped family over its L2 grid, then the k-NN baseline over its k grid."""
    out = [Candidate("group_logistic", float(l2), partial(fit_group, l2=float(l2))) for l2 in l2_grid]
    out += [Candidate("knn", float(k), partial(fit_knn, k=int(k))) for k in k_grid]
    return out


def cross_validate(train: RoutingSet, x: np.ndarray, tok: np.ndarray, cands: Sequence[Candidate] | None = None,
                   folds: int = 5, seeds: int = 10) -> list[CVScore]:
    """Score every candidate by repeated k-fold routing on ``train`` (the same folds for all of them)."""
    # late: router_eval imports this module, and the curve arithmetic must be the one the report uses
    from bench.router_eval import _apgr, _cost_to_reach, _sweep, cost_estimate

    cands = list(candidates() if cands is None else cands)
    n = len(train.prompts)
    y, cost = train.correct, train.cost
    jb = int(np.argmax(y.mean(0)))
    jc = int(np.argmin(cost.sum(0)))
    c_best, q_best = float(cost[:, jb].sum()), float(y[:, jb].mean())
    c_cheap, q_cheap = float(cost[:, jc].sum()), float(y[:, jc].mean())
    figs: list[list[tuple[float, ...]]] = [[] for _ in cands]
    for seed in range(seeds):
        fold = np.random.default_rng(1000 + seed).permutation(n) % folds
        p = np.zeros((len(cands), *y.shape))
        cost_hat = np.zeros(y.shape)
        for k in range(folds):
            tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            part = train.take(tr, "cv")
            preds = [cand.fit(x[tr], part) for cand in cands]
            for i, pred in enumerate(preds):
                p[i, te] = pred.predict(x[te])[:, [pred.models.index(mm) for mm in train.models]]
            # the cost model reads only the group centroids, which every group-logistic fit of this fold
            # shares whatever its L2: reuse one, and fit one only when no candidate is of that family
            grouper = next((q for q in preds if isinstance(q, GroupLogisticPredictor)), None) or fit_group(x[tr], part, 1.0)
            cost_hat[te] = cost_estimate(part, tok[tr], grouper, x[te], tok[te])
        for i in range(len(cands)):
            pts = _sweep(p[i], cost_hat, y, cost, "lambda")
            c95 = _cost_to_reach(pts, 0.95 * q_best, False)
            c95h = _cost_to_reach(pts, 0.95 * q_best, True)
            pc = np.clip(p[i], 1e-6, 1 - 1e-6)
            figs[i].append((1.0 if c95 is None else c95 / c_best, 1.0 if c95h is None else c95h / c_best,
                            _apgr(pts, c_cheap, q_cheap, c_best, q_best),
                            float(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean()), c95 is None))
    scores = []
    for cand, rows in zip(cands, figs, strict=True):
        f = np.array(rows, dtype=float)
        scores.append(CVScore(cand.name, cand.family, cand.param, float(f[:, 0].mean()), float(f[:, 1].mean()),
                              float(f[:, 2].mean()), float(f[:, 3].mean()), float(f[:, 0].std()), int(f[:, 4].sum())))
    return scores


def best(scores: Sequence[CVScore], family: str | None = None) -> CVScore:
    """The candidate (of ``family``, or of any) with the lowest mean of the raw and hull cost shares at 95 %."""
    pool = [s for s in scores if family is None or s.family == family]
    if not pool:
        raise ValueError(f"no cross-validated candidate of family {family!r}")
    return min(pool, key=lambda s: s.criterion)
