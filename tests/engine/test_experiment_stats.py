"""engine._experiment_stats on simulated data: intervals cover the truth at their level, a known effect is
found with intervals that contain it, and the sequential test declares no effect in A/A runs at no more
than its error rate however often it is looked at (where naive peeking at a fixed interval does not)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import _experiment_stats as st


def _peek_naive(a: np.ndarray, b: np.ndarray, checkpoints: int = 40, min_n: int = 100) -> bool:
    """A fixed 95% interval looked at after every batch: 'significant' once it ever excludes 0."""
    for k in np.linspace(min_n, a.size, checkpoints).astype(int):
        d = st.compare(a[:k], b[:k], checkpoints=1)
        if not d.ci.contains(0.0):
            return True
    return False


def _aa(runs: int, naive_seeds: int, alpha: float, n: int = 2000) -> tuple[int, int]:
    """``runs`` A/A experiments (lognormal costs, ``n`` per arm, random arrival order): how many the mSPRT
    decided, and how many of the first ``naive_seeds`` naive peeking at a fixed 95 % interval declared."""
    decided = naive = 0
    for seed in range(runs):
        rng = np.random.default_rng(10_000 + seed)
        a, b = rng.lognormal(0, 1, n), rng.lognormal(0, 1, n)
        ta, tb = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
        decided += st.compare(a, b, alpha=alpha, order_a=ta, order_b=tb).decided
        if seed < naive_seeds:
            oa, ob = np.argsort(ta), np.argsort(tb)
            naive += _peek_naive(a[oa], b[ob])
    return decided, naive


def test_mean_and_wilson_intervals_cover_the_truth() -> None:
    rng = np.random.default_rng(1)
    cover_mean = cover_rate = 0
    runs = 400
    for _ in range(runs):
        x = rng.lognormal(0.0, 0.8, 300)  # skewed, like costs
        cover_mean += st.mean_ci(x).ci.contains(math.exp(0.32))  # E = exp(sigma^2 / 2)
        k = int(rng.binomial(500, 0.02))
        cover_rate += st.wilson(k, 500).ci.contains(0.02)
    assert 0.92 <= cover_mean / runs <= 0.98
    assert 0.92 <= cover_rate / runs <= 0.995
    e = st.wilson(0, 100)
    assert e.value == 0 and e.ci.lo == 0 and 0 < e.ci.hi < 0.05  # a rate of 0 still has an upper bound


def test_known_effect_found_with_intervals_containing_the_truth() -> None:
    """Arm B 20 % cheaper per request and 5 ms slower: both differences found, decided, intervals hold them."""
    rng = np.random.default_rng(7)
    n_a, n_b = 3000, 3000
    tokens_a, tokens_b = rng.integers(50, 400, n_a), rng.integers(50, 400, n_b)
    cost_a, cost_b = tokens_a * 2e-6, tokens_b * 2e-6 * 0.8
    lat_a, lat_b = rng.gamma(4.0, 5.0, n_a), rng.gamma(4.0, 5.0, n_b) + 5.0
    cost = st.compare(cost_a, cost_b)
    lat = st.compare(lat_a, lat_b)
    assert cost.rel is not None and cost.rel_ci is not None and cost.rel_ci.contains(-0.20), cost
    assert cost.decided and cost.cs.hi < 0
    assert lat.ci.contains(5.0) and lat.cs.contains(5.0) and lat.decided, lat
    assert lat.cs.lo <= lat.ci.lo and lat.cs.hi >= lat.ci.hi  # the always-valid interval is the wider one


def test_aa_over_many_seeds_declares_no_effect_at_the_error_rate() -> None:
    """400 A/A experiments, each looked at 40 times: the mSPRT's false 'decided' rate stays under alpha;
    naive peeking at a 95 % interval crosses far more often (the reason for the sequential test)."""
    alpha, runs = 0.05, 400
    decided, naive = _aa(runs, 100, alpha)
    rate = decided / runs
    # alpha plus three binomial standard errors
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs), rate
    assert naive / 100 > 2 * alpha, naive  # peeking a fixed interval 40 times inflates the error rate


def test_proportions_and_split_check() -> None:
    rng = np.random.default_rng(3)
    a = (rng.uniform(size=5000) < 0.02).astype(float)
    b = (rng.uniform(size=5000) < 0.10).astype(float)
    d = st.compare(a, b)
    assert d.decided and d.ci.contains(0.08)
    ok = st.split_check([9020, 980], [90, 10])
    assert [round(p, 3) for _, p, _ in ok] == [0.9, 0.1] and all(x for *_, x in ok)
    bad = st.split_check([8500, 1500], [90, 10])
    assert not bad[0][2] and not bad[1][2]


def test_degenerate_inputs_do_not_raise() -> None:
    one = st.compare(np.array([1.0]), np.array([2.0, 3.0]))
    assert not one.decided and math.isnan(one.ci.lo)
    empty = st.mean_ci(np.array([]))
    assert empty.n == 0 and math.isnan(empty.value)
    q = st.quantile_ci(np.arange(1000.0), 0.99)
    assert q.ci.lo <= 989 <= q.ci.hi


@pytest.mark.slow
def test_aa_and_known_effect_figures() -> None:
    """The figures in results/experiments/: 1000 A/A seeds (mSPRT vs naive peeking) and 300 known-effect seeds."""
    alpha, runs = 0.05, 1000
    decided, naive = _aa(runs, 300, alpha)
    cov_rel = cov_lat = dec = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        ta_, tb_ = rng.integers(50, 400, 3000), rng.integers(50, 400, 3000)
        c = st.compare(ta_ * 2e-6, tb_ * 2e-6 * 0.8)
        lat = st.compare(rng.gamma(4, 5, 3000), rng.gamma(4, 5, 3000) + 5)
        cov_rel += bool(c.rel_ci is not None and c.rel_ci.contains(-0.2))
        cov_lat += lat.ci.contains(5.0)
        dec += c.decided and lat.decided
    print(f"A/A: mSPRT decided {decided}/{runs} = {decided / runs:.2%} at alpha {alpha}; naive 95% CI peeked 40 "
          f"times: {naive}/300 = {naive / 300:.1%}. Known effect (300 seeds, 3000/arm): relative cost CI covers "
          f"-20% in {cov_rel / 300:.1%}, latency CI covers +5 ms in {cov_lat / 300:.1%}, both decided in {dec / 300:.0%}")
    assert decided / runs <= alpha
