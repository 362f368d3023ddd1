"""Statistics for experiments: intervals per arm, differences against control, and a sequential test.

Everything here is a pure function of arrays (no ledger, no I/O), so it is tested on simulated data.

* **Means** (cost per request, tokens, latency, feedback score): the normal interval of the mean, with the
  sample variance (the arms have hundreds to millions of requests; the central limit theorem holds).
* **Proportions** (error rate, hit rate, the traffic share): Wilson's score interval, which stays inside
  [0, 1] and behaves at rates near 0 (error rates).
* **Difference against control**: Welch's difference of means (``b - a``), its normal interval, and the
  relative difference ``b / a - 1`` with a delta-method interval.
* **Sequential test** (valid however often the report is looked at): the mixture sequential probability
  ratio test (mSPRT, Johari, Pekelis & Walsh 2017, "Always valid inference") with a normal mixing
  distribution ``N(0, tau^2)`` over the difference. Its mixture likelihood ratio at a moment with
  difference estimate ``d`` and variance ``V`` is

      L = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

  and ``P(L ever >= 1/alpha | no difference) <= alpha`` (Ville's inequality), so a result is *decided* once
  ``L`` has crossed ``1/alpha`` at any checkpoint, whenever and however often one looks. The same
  mixture gives the always-valid confidence sequence ``d +- sqrt(V (V + tau^2) / tau^2 * (2 ln(1/alpha)
  + ln((V + tau^2) / V)))``, wider than the fixed interval: the price of peeking. The variance is the
  plug-in estimate, so checkpoints start after a burn-in (``min_n`` per arm).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np

Z95 = 1.959963984540054


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


class Interval(msgspec.Struct):
    lo: float
    hi: float

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi


class Estimate(msgspec.Struct):
    """One metric of one arm: its value and interval over ``n`` observations."""

    n: int
    value: float
    ci: Interval


class Diff(msgspec.Struct):
    """An arm against control: ``b - a`` and ``b / a - 1``, each with a fixed-n interval; the always-valid
    confidence sequence of ``b - a`` and whether the sequential test has decided."""

    diff: float
    ci: Interval
    rel: float | None
    rel_ci: Interval | None
    cs: Interval  # always-valid (anytime) interval of diff
    decided: bool  # the mSPRT crossed 1/alpha at some checkpoint
    p_always_valid: float  # min over checkpoints of 1/L, capped at 1


def mean_ci(x: np.ndarray, level: float = 0.95) -> Estimate:
    x = np.asarray(x, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return Estimate(0, math.nan, Interval(math.nan, math.nan))
    m = float(x.mean())
    if n == 1:
        return Estimate(1, m, Interval(-math.inf, math.inf))
    se = float(x.std(ddof=1)) / math.sqrt(n)
    z = _z(level)
    return Estimate(n, m, Interval(m - z * se, m + z * se))


def wilson(successes: int, n: int, level: float = 0.95) -> Estimate:
    if n == 0:
        return Estimate(0, math.nan, Interval(math.nan, math.nan))
    z = _z(level)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(n, p, Interval(max(0.0, centre - half), min(1.0, centre + half)))


def quantile_ci(x: np.ndarray, q: float, level: float = 0.95) -> Estimate:
    """A distribution-free interval of the ``q`` quantile (order statistics, binomial normal approx.)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = int(x.size)
    if n == 0:
        return Estimate(0, math.nan, Interval(math.nan, math.nan))
    z = _z(level)
    half = z * math.sqrt(n * q * (1 - q))
    lo = max(0, math.floor(n * q - half) - 1)
    hi = min(n - 1, math.ceil(n * q + half))
    return Estimate(n, float(np.quantile(x, q)), Interval(float(x[lo]), float(x[hi])))


def _var_of_mean(x: np.ndarray) -> float:
    return float(x.var(ddof=1)) / x.size if x.size > 1 else math.inf


def _log_lr(d: float, v: float, tau2: float) -> float:
    """ln L of the normal-mixture SPRT (module docstring). With no variance at all (every observation the
    same, as an error rate of 0 in both arms), a difference is certain and no difference is no evidence."""
    if v <= 0.0 or v + tau2 == v:
        return math.inf if d != 0.0 else -math.inf
    return 0.5 * math.log(v / (v + tau2)) + tau2 * d * d / (2 * v * (v + tau2))


def _cs_half(v: float, tau2: float, alpha: float) -> float:
    return math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((v + tau2) / v)))


def default_tau2(a: np.ndarray, b: np.ndarray) -> float:
    """The mixing variance: tuned to detect a difference of about 10 % of control's mean (or, for a mean near
    zero, a tenth of a standard deviation). The test is valid for any fixed choice; this one sets where
    it is most powerful."""
    scale = 0.1 * abs(float(np.mean(a))) if a.size else 0.0
    sd = float(np.std(np.concatenate([a, b]))) if a.size + b.size > 1 else 0.0
    scale = max(scale, 0.1 * sd, 1e-12)
    return scale * scale


def compare(a: np.ndarray, b: np.ndarray, *, alpha: float = 0.05, level: float = 0.95,
            order_a: np.ndarray | None = None, order_b: np.ndarray | None = None,
            checkpoints: int = 40, min_n: int = 100, tau2: float | None = None) -> Diff:
    """Arm ``b`` against control ``a``. ``order_*``: the observations' times (the sequence the test walks
    through, checkpoint by checkpoint); None: the arrays are already in arrival order."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ma, mb = float(a.mean()) if a.size else math.nan, float(b.mean()) if b.size else math.nan
    d = mb - ma
    va, vb = _var_of_mean(a), _var_of_mean(b)
    v = va + vb
    z = _z(level)
    if not math.isfinite(v):
        nan = Interval(math.nan, math.nan)
        return Diff(d, nan, None, None, nan, False, 1.0)
    se = math.sqrt(v)
    ci = Interval(d - z * se, d + z * se)
    rel = rel_ci = None
    if ma != 0 and math.isfinite(ma):
        rel = mb / ma - 1
        # delta method for mb/ma
        rse = abs(mb / ma) * math.sqrt(vb / (mb * mb) + va / (ma * ma)) if mb != 0 else math.sqrt(vb) / abs(ma)
        rel_ci = Interval(rel - z * rse, rel + z * rse)
    t2 = tau2 if tau2 is not None else default_tau2(a, b)
    vv = v
    cs_half = _cs_half(vv, t2, alpha) if vv > 0 and vv + t2 != vv else 0.0
    best = _walk(a, b, order_a, order_b, t2, checkpoints, min_n)
    # The current moment is a checkpoint too.
    best = max(best, _log_lr(d, vv, t2)) if min(a.size, b.size) >= min_n else best
    threshold = math.log(1 / alpha)
    p = min(1.0, math.exp(-best)) if best > -math.inf else 1.0
    return Diff(d, ci, rel, rel_ci, Interval(d - cs_half, d + cs_half), best >= threshold, p)


def _walk(a: np.ndarray, b: np.ndarray, ta: np.ndarray | None, tb: np.ndarray | None, tau2: float,
          checkpoints: int, min_n: int) -> float:
    """The largest ln L over ``checkpoints`` moments spread over the data's arrival order (after the burn-in)."""
    if ta is None:
        ta = np.linspace(0.0, 1.0, a.size)
    if tb is None:
        tb = np.linspace(0.0, 1.0, b.size)
    ia, ib = np.argsort(ta, kind="stable"), np.argsort(tb, kind="stable")
    a, b, ta, tb = a[ia], b[ib], np.asarray(ta)[ia], np.asarray(tb)[ib]
    if not a.size or not b.size:
        return -math.inf
    # running sums at each arm's arrivals
    ca, ca2 = np.cumsum(a), np.cumsum(a * a)
    cb, cb2 = np.cumsum(b), np.cumsum(b * b)
    start, end = max(ta[0], tb[0]), max(ta[-1], tb[-1])
    best = -math.inf
    for t in np.linspace(start, end, checkpoints):
        na = int(np.searchsorted(ta, t, side="right"))
        nb = int(np.searchsorted(tb, t, side="right"))
        if min(na, nb) < max(min_n, 2):
            continue
        ma, mb = ca[na - 1] / na, cb[nb - 1] / nb
        va = max(ca2[na - 1] / na - ma * ma, 0.0) * na / (na - 1) / na
        vb = max(cb2[nb - 1] / nb - mb * mb, 0.0) * nb / (nb - 1) / nb
        best = max(best, _log_lr(mb - ma, va + vb, tau2))
    return best


def split_check(counts: Sequence[int], weights: Sequence[float], z: float = 4.0) -> list[tuple[float, float, bool]]:
    """Each arm's observed share, expected share, and whether it is within ``z`` binomial standard
    deviations of the expected share (a sample-ratio-mismatch check)."""
    n = sum(counts)
    total_w = sum(weights)
    out = []
    for c, w in zip(counts, weights, strict=True):
        p = w / total_w if total_w else 0.0
        sd = math.sqrt(n * p * (1 - p)) if n else 0.0
        out.append((c / n if n else math.nan, p, abs(c - n * p) <= z * sd + 1e-9))
    return out
