"""The routing cross-validation that picks the shipped predictor uses the train part only, tunes the
k-NN baseline by the same folds, and prefers the setting that can see where the cheap model is good."""

from __future__ import annotations

import numpy as np
import pytest

from bench.router_cv import Candidate, CVScore, best, candidates, cross_validate, fit_group
from bench.router_data import RoutingSet
from router.predictor import GroupLogisticPredictor


def _set(n: int = 240, seed: int = 3) -> tuple[RoutingSet, np.ndarray, np.ndarray]:
    """'cheap' is right exactly where x[0] > 0; 'strong' is right 90 % of the time at 10x the cost."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cheap = (x[:, 0] > 0).astype(np.float32)
    strong = (rng.random(n) < 0.9).astype(np.float32)
    correct = np.stack([cheap, strong], 1)
    cost = np.tile([1.0, 10.0], (n, 1))
    groups = np.array(["a", "b"] * (n // 2))
    data = RoutingSet("synthetic", [f"p{i}" for i in range(n)], groups, ["cheap", "strong"], correct, cost, "dataset")
    return data, x, np.full(n, 100.0)


def test_cross_validation_prefers_the_setting_that_routes_by_prompt() -> None:
    data, x, tok = _set()
    scores = cross_validate(data, x, tok, candidates(l2_grid=(0.3, 3000.0), k_grid=()), folds=3, seeds=2)
    assert [(s.family, s.param) for s in scores] == [("group_logistic", 0.3), ("group_logistic", 3000.0)]
    assert all(isinstance(s, CVScore) and np.isfinite([s.cost_share_at_95, s.apgr, s.log_loss]).all() for s in scores)
    chosen = best(scores)
    assert chosen.param == 0.3
    # routing the x[0] > 0 half to 'cheap' reaches 95 % of 'strong' at well under its cost
    assert chosen.cost_share_at_95 < 0.8 < scores[1].cost_share_at_95


def test_the_knn_baseline_is_tuned_by_the_same_folds() -> None:
    data, x, tok = _set()
    scores = cross_validate(data, x, tok, candidates(l2_grid=(0.3,), k_grid=(5, 200)), folds=3, seeds=2)
    knn = {s.param: s for s in scores if s.family == "knn"}
    assert set(knn) == {5.0, 200.0} and knn[5.0].name == "knn k=5"
    # a few neighbours see the x[0] > 0 boundary; 200 of 160 train prompts average it away
    assert best(scores, "knn").param == 5.0
    assert knn[5.0].cost_share_at_95 < knn[200.0].cost_share_at_95
    assert best(scores).family in {"group_logistic", "knn"}
    with pytest.raises(ValueError, match="family 'ridge'"):
        best(scores, "ridge")


def test_a_candidate_is_any_fit_function() -> None:
    data, x, tok = _set(120)
    seen: list[int] = []

    def fit(xa: np.ndarray, part: RoutingSet) -> GroupLogisticPredictor:
        seen.append(len(xa))
        return fit_group(xa, part, 1.0)

    (score,) = cross_validate(data, x, tok, [Candidate("group_logistic", 1.0, fit)], folds=4, seeds=1)
    assert seen == [90, 90, 90, 90]  # one fit per fold, on the other three quarters only
    assert score.name == "group_logistic l2=1" and score.never in (0, 1)


def test_fit_group_learns_one_intercept_per_group() -> None:
    data, x, _ = _set(120)
    pred = fit_group(x, data, 1.0)
    assert pred.groups == ("a", "b") and pred.models == ("cheap", "strong")
    assert pred.predict(x).shape == (120, 2)
