"""The routing cross-validation that picks the shipped predictor's L2 uses the train part only and
prefers the setting that can see where the cheap model is good."""

from __future__ import annotations

import numpy as np

from bench.router_cv import CVScore, best, cross_validate, fit_group
from bench.router_data import RoutingSet


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
    scores = cross_validate(data, x, tok, l2_grid=(0.3, 3000.0), folds=3, seeds=2)
    assert [s.l2 for s in scores] == [0.3, 3000.0]
    assert all(isinstance(s, CVScore) and np.isfinite([s.cost_share_at_95, s.apgr, s.log_loss]).all() for s in scores)
    chosen = best(scores)
    assert chosen.l2 == 0.3
    # routing the x[0] > 0 half to 'cheap' reaches 95 % of 'strong' at well under its cost
    assert chosen.cost_share_at_95 < 0.8 < scores[1].cost_share_at_95


def test_fit_group_learns_one_intercept_per_group() -> None:
    data, x, _ = _set(120)
    pred = fit_group(x, data, 1.0)
    assert pred.groups == ("a", "b") and pred.models == ("cheap", "strong")
    assert pred.predict(x).shape == (120, 2)
