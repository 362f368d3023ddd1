"""Choosing the router's predictor on the train part only: repeated k-fold cross-validation of routing.

Log loss is the wrong yardstick here: it rewards predicting every model's accuracy well, while routing
only needs the *difference* between the cheap model and the strong one to be right, per prompt, and a
feature that sharpens the first can blur the second (structure features did exactly that on
RouterBench; see the report). So each candidate is scored the way the router is judged: out-of-fold
P(correct) for every train prompt (k folds, repeated over several random fold assignments because one
assignment is noisy), swept over λ in ``P - λ·cost``, and the cost share at 95 % of the best single
model's quality (raw and on the hull) is read off. The test part is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bench.router_data import RoutingSet
from router.predictor import GroupLogisticPredictor

Factory = Callable[[np.ndarray, RoutingSet], GroupLogisticPredictor]
GROUP_L2 = (1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 100.0)


@dataclass(frozen=True)
class CVScore:
    """Mean (and spread over fold assignments) of one candidate's routing figures on the train part."""

    name: str
    l2: float
    cost_share_at_95: float
    cost_share_at_95_hull: float
    apgr: float
    log_loss: float
    spread_95: float
    never: int  # fold assignments whose curve never reached 95 %

    @property
    def criterion(self) -> float:
        return 0.5 * (self.cost_share_at_95 + self.cost_share_at_95_hull)


def fit_group(x: np.ndarray, data: RoutingSet, l2: float) -> GroupLogisticPredictor:
    m = len(data.models)
    return GroupLogisticPredictor.fit(np.repeat(x, m, axis=0), [data.models[j] for _ in range(len(x)) for j in range(m)],
                                      data.correct.reshape(-1), groups=np.repeat(data.groups, m).tolist(), l2=l2, folds=1)


def cross_validate(train: RoutingSet, x: np.ndarray, tok: np.ndarray, l2_grid: Sequence[float] = GROUP_L2,
                   folds: int = 5, seeds: int = 10) -> list[CVScore]:
    """Score ``GroupLogisticPredictor`` at each L2 strength by repeated k-fold routing on ``train``."""
    # late: router_eval imports this module, and the curve arithmetic must be the one the report uses
    from bench.router_eval import _apgr, _cost_to_reach, _sweep, cost_estimate

    n = len(train.prompts)
    y, cost = train.correct, train.cost
    jb = int(np.argmax(y.mean(0)))
    jc = int(np.argmin(cost.sum(0)))
    c_best, q_best = float(cost[:, jb].sum()), float(y[:, jb].mean())
    scores = []
    for l2 in l2_grid:
        figs = []
        for seed in range(seeds):
            fold = np.random.default_rng(1000 + seed).permutation(n) % folds
            p = np.zeros(y.shape)
            cost_hat = np.zeros(y.shape)
            for k in range(folds):
                tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
                part = train.take(tr, "cv")
                pred = fit_group(x[tr], part, l2)
                p[te] = pred.predict(x[te])[:, [pred.models.index(mm) for mm in train.models]]
                cost_hat[te] = cost_estimate(part, tok[tr], pred, x[te], tok[te])
            pts = _sweep(p, cost_hat, y, cost, "lambda")
            c95 = _cost_to_reach(pts, 0.95 * q_best, False)
            c95h = _cost_to_reach(pts, 0.95 * q_best, True)
            pc = np.clip(p, 1e-6, 1 - 1e-6)
            figs.append((1.0 if c95 is None else c95 / c_best, 1.0 if c95h is None else c95h / c_best,
                         _apgr(pts, float(cost[:, jc].sum()), float(y[:, jc].mean()), c_best, q_best),
                         float(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean()), c95 is None))
        f = np.array(figs, dtype=float)
        scores.append(CVScore(f"group_logistic l2={l2:g}", l2, float(f[:, 0].mean()), float(f[:, 1].mean()),
                              float(f[:, 2].mean()), float(f[:, 3].mean()), float(f[:, 0].std()), int(f[:, 4].sum())))
    return scores


def best(scores: Sequence[CVScore]) -> CVScore:
    """The candidate with the lowest mean of the raw and hull cost shares at 95 %."""
    return min(scores, key=lambda s: s.criterion)
