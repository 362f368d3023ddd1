"""Adaptive per-entry thresholds with an error bound (the idea of vCache, ICLR 2026; written from the paper's
idea only, none of its code).

A static threshold serves a candidate when its score (the hit policy's ``Verdict.score``: cosine, or the
learned verifier's probability) clears one number for every entry. Here each cached entry keeps the labels
its reuses have gathered (shadow verdicts, explorations, feedback, approved near misses), and a candidate is
served only when an upper confidence bound of the error of reusing *that* entry at *that* score is below
``delta``. When the bound is too wide the gate says ``explore``: the caller serves a fresh answer, compares
the two off the request path, and the verdict comes back through :meth:`AdaptiveGate.learn`.

The model, per namespace (a tenant's cache space):

* every entry has a threshold ``t_e``: reusing it is right when the score is at least ``t_e``. A good label at
  score ``s`` says ``t_e <= s``; a bad one says ``t_e > s``. So an entry's labels bound ``t_e`` to an interval
  ``(L, U]`` (``L`` = highest bad score, ``U`` = lowest good score);
* the prior over ``t_e`` is shared by the namespace: ``F(s) = P(t_e <= s)`` is the fraction of good labels
  among all of the namespace's labels scored near ``s`` (a window of ``+-window``), with a Wilson lower bound
  at ``confidence`` (so few labels mean a wide bound and exploration);
* the error of reusing an entry at score ``s`` is ``P(t_e > s | L < t_e <= U) = (F(U) - F(s)) / (F(U) - F(L))``
  and ``0`` at or above ``U``, up to the rate at which the threshold model itself is wrong, which is
  measured too: every label that arrives at or above an entry's ``U`` counts as a check of it (its Wilson
  upper bound, from a weak prior, is the error used there);
* a candidate at or below a bad label's score (``s <= L``) is refused outright: that entry was wrong for a
  closer request.

``explore_rate`` of the confident hits are still explored, so that the labels keep covering what is served.
The labels are kept in a small SQLite file next to the cache (``adaptive.sqlite3``) and replayed on open.
"""

from __future__ import annotations

import math
import random
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import msgspec

from cache.errors import CacheInputError

Decision = Literal["serve", "explore", "refuse"]

_BINS = 200  # score bins over [0, 1]
_MAX_ENTRY_LABELS = 64  # most labels kept per entry (the newest)
_CAP_EVERY = 16  # bound "namespace": decisions between two computations of the error cap
_SYNC_EVERY_S = 2.0  # how often a gate reads the labels other workers appended to the shared file

# z of the one-sided bounds by confidence level (no scipy on the request path).
_Z = {0.8: 0.8416, 0.85: 1.0364, 0.9: 1.2816, 0.95: 1.6449, 0.975: 1.96, 0.99: 2.3263}


class AdaptiveConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``cache.adaptive`` in the config. Scores are in the hit policy's units (cosine, or probability with the
    learned verifier)."""

    enabled: bool = False
    delta: float = 0.02  # the error bound: serve when the upper bound of P(wrong answer) is below it
    confidence: float = 0.9  # one-sided level of those bounds; a key of _Z
    # Candidates scored below this are never served nor explored. None: 0.80 for a cosine score, 0.30 for the
    # learned verifier's probability (AdaptiveGate's ``learned``).
    floor: float | None = None
    window: float = 0.03  # half-width of the score window the namespace prior pools labels over
    explore_rate: float = 0.02  # confident hits still explored, to keep checking what is served
    model_prior: tuple[float, float] = (0.2, 19.8)  # (bad, good) pseudo-labels for the threshold model's checks
    # What delta bounds. "request": every served answer's own error bound is under delta (vCache's per-request
    # guarantee). "namespace": the namespace's false-hit rate (wrong cached answers / requests): of the
    # candidates seen so far, those with the lowest error bounds would be served, as many as keep the sum of
    # their bounds under delta x the requests seen (the gate is told of every lookup: ``seen``); a candidate
    # is served when its bound is within that cap.
    bound: Literal["request", "namespace"] = "namespace"

    def __post_init__(self) -> None:
        if not 0.0 < self.delta < 0.5:
            raise CacheInputError(f"adaptive.delta must be in (0, 0.5), got {self.delta}")
        if self.confidence not in _Z:
            raise CacheInputError(f"adaptive.confidence must be one of {sorted(_Z)}, got {self.confidence}")
        if (self.floor is not None and not 0.0 <= self.floor <= 1.0) or not 0.0 < self.window <= 0.5:
            raise CacheInputError("adaptive.floor must be in [0, 1] and adaptive.window in (0, 0.5]")
        if not 0.0 <= self.explore_rate <= 1.0:
            raise CacheInputError(f"adaptive.explore_rate must be in [0, 1], got {self.explore_rate}")
        if min(self.model_prior) < 0:
            raise CacheInputError("adaptive.model_prior must be two non-negative pseudo-counts (bad, good)")


def wilson_upper(bad: float, n: float, z: float) -> float:
    """Wilson score upper bound of a proportion ``bad / n`` (1.0 when there is no evidence)."""
    if n <= 0:
        return 1.0
    p = bad / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0))
    return min(1.0, (centre + margin) / denom)


def wilson_interval(bad: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The two-sided Wilson interval of ``bad / n`` ((0, 1) without evidence)."""
    if n <= 0:
        return 0.0, 1.0
    p = bad / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    margin = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
    return max(0.0, centre - margin), min(1.0, centre + margin)


def _bin(score: float) -> int:
    return min(_BINS - 1, max(0, int(score * _BINS)))


class _Space:
    """One namespace's labels: per-bin counts (the prior) and each entry's own labels."""

    __slots__ = ("bad", "cap", "cap_age", "checks", "entries", "errs", "good", "requests", "sums")

    def __init__(self) -> None:
        self.requests = 0  # lookups seen (bound "namespace")
        self.errs = [0] * _BINS  # the error bounds of the candidates decided, binned
        self.sums = [0.0] * _BINS  # and their sums per bin
        self.cap = 0.0  # the highest error bound served (recomputed every _CAP_EVERY decisions)
        self.cap_age = _CAP_EVERY
        self.good = [0] * _BINS
        self.bad = [0] * _BINS
        self.entries: dict[int, list[tuple[float, bool]]] = {}
        self.checks = [0, 0]  # labels at or above an entry's lowest good score: [bad, good]


class AdaptiveGate:
    """Decides, per candidate, whether to serve, explore or refuse; learns from labels. Thread-safe."""

    def __init__(self, config: AdaptiveConfig, path: str | Path | None = None, *, seed: int | None = None,
                 learned: bool = False) -> None:
        self.config = config
        self.floor = config.floor if config.floor is not None else (0.30 if learned else 0.80)
        self._z = _Z[config.confidence]
        self._spaces: dict[str, _Space] = {}
        self._mu = threading.Lock()
        self._rng = random.Random(seed)
        self._db: sqlite3.Connection | None = None
        self._rowid = 0  # the last label row applied (every worker on the file appends; each reads the others')
        self._synced = 0.0
        if path is not None:
            self._db = sqlite3.connect(Path(path), check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS adaptive_labels (namespace TEXT, entry_id INTEGER, "
                             "score REAL, good INTEGER, ts REAL)")
            with self._mu:
                self._sync_locked()

    def _sync_locked(self) -> None:
        """Apply the label rows written since the last sync (this worker's and every other's). Holds _mu."""
        if self._db is None:
            return
        rows = self._db.execute("SELECT rowid, namespace, entry_id, score, good FROM adaptive_labels "
                                "WHERE rowid > ? ORDER BY rowid", (self._rowid,)).fetchall()
        for rowid, ns, eid, score, good in rows:
            self._learn(ns, int(eid), float(score), bool(good))
            self._rowid = rowid
        self._synced = time.monotonic()

    def refresh(self) -> None:
        """Catch up with labels other workers wrote, at most every ``_SYNC_EVERY_S`` (cheap when not due)."""
        if self._db is not None and time.monotonic() - self._synced >= _SYNC_EVERY_S:
            with self._mu:
                self._sync_locked()

    def close(self) -> None:
        with self._mu:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ------------------------------------------------------------------------------------ decisions
    def decide(self, namespace: str, entry_id: int, score: float) -> Decision:
        """``serve`` when the error bound of reusing ``entry_id`` at ``score`` is under delta, ``refuse`` when
        the entry was wrong for a closer request, else ``explore`` (serve fresh, compare, learn)."""
        if score < self.floor:
            return "refuse"
        self.refresh()
        err = self.error_bound(namespace, entry_id, score)
        if err is None:
            return "refuse"
        if self.config.bound == "namespace":
            ok = self._spend(namespace, err)
        else:
            ok = err < self.config.delta
        if ok:
            if self.config.explore_rate and self._rng.random() < self.config.explore_rate:
                return "explore"
            return "serve"
        return "explore"

    def seen(self, namespace: str) -> None:
        """One lookup in ``namespace`` (bound "namespace": the requests the false-hit budget grows with)."""
        if self.config.bound == "namespace":
            with self._mu:
                self._space(namespace).requests += 1

    def _spend(self, namespace: str, err: float) -> bool:
        """Bound "namespace": serve the candidates with the lowest error bounds, as many as the namespace's
        false-hit budget (delta x requests) covers, judged on the candidates seen so far."""
        with self._mu:
            space = self._space(namespace)
            b = _bin(err)
            space.errs[b] += 1
            space.sums[b] += err
            space.cap_age += 1
            if space.cap_age >= _CAP_EVERY:
                space.cap_age = 0
                budget, total, cap = self.config.delta * max(space.requests, 1), 0.0, -1.0
                for i in range(_BINS):
                    total += space.sums[i]
                    if total > budget:
                        break
                    if space.errs[i]:
                        cap = (i + 1) / _BINS
                space.cap = cap
            return err < space.cap

    def _space(self, namespace: str) -> _Space:
        space = self._spaces.get(namespace)
        if space is None:
            space = self._spaces[namespace] = _Space()
        return space

    def approved(self, namespace: str, entry_id: int, score: float) -> bool:
        """True when ``entry_id`` was judged right (a label) at a score at or below ``score`` and never wrong at
        one at or above it: how an approved near miss is served without the adaptive policy."""
        with self._mu:
            space = self._spaces.get(namespace)
            labels = space.entries.get(entry_id) if space is not None else None
            if not labels:
                return False
            lo, hi = _interval(labels)
        return score >= hi and score > lo

    def error_bound(self, namespace: str, entry_id: int, score: float) -> float | None:
        """The upper bound of P(wrong) for reusing ``entry_id`` at ``score``; None when its labels refuse it."""
        z = self._z
        with self._mu:
            space = self._spaces.get(namespace)
            if space is None:
                return 1.0
            labels = space.entries.get(entry_id)
            lo, hi = _interval(labels) if labels else (-1.0, 2.0)
            if score <= lo:
                return None
            f_lcb = 1.0 - self._window_upper(space, score, z)  # lower bound of F(score)
            if score >= hi:
                bad, good = space.checks
                pb, pg = self.config.model_prior
                return min(wilson_upper(bad + pb, bad + good + pb + pg, z), 1.0 - f_lcb)
            f_hi = 1.0 if hi > 1.0 else self._window_point(space, hi)
            f_lo = 0.0 if lo < 0.0 else self._window_point(space, lo)
        span = f_hi - f_lo
        if span <= 1e-9:
            return 1.0 - f_lcb
        return min(1.0, max(0.0, (f_hi - f_lcb) / span))

    def _window(self, space: _Space, score: float) -> tuple[int, int]:
        w = self.config.window
        a, b = _bin(score - w), _bin(score + w)
        return sum(space.bad[a : b + 1]), sum(space.good[a : b + 1])

    def _window_upper(self, space: _Space, score: float, z: float) -> float:
        bad, good = self._window(space, score)
        return wilson_upper(bad, bad + good, z)

    def _window_point(self, space: _Space, score: float) -> float:
        bad, good = self._window(space, score)
        return (good + 0.5) / (bad + good + 1.0)

    # ------------------------------------------------------------------------------------ learning
    def learn(self, namespace: str, entry_id: int, score: float, good: bool) -> None:
        """One label: reusing ``entry_id`` at ``score`` was right (``good``) or wrong. Persisted."""
        score = float(score)
        if not math.isfinite(score):
            raise CacheInputError("adaptive label: score must be a finite number")
        with self._mu:
            if self._db is None:
                self._learn(namespace, entry_id, score, good)
                return
            self._db.execute("INSERT INTO adaptive_labels VALUES (?, ?, ?, ?, ?)",
                             (namespace, entry_id, score, int(good), time.time()))
            self._sync_locked()  # applies this row (and any other worker's) in file order

    def learn_many(self, labels: Iterable[tuple[str, int, float, bool]]) -> None:
        for ns, eid, score, good in labels:
            self.learn(ns, eid, score, good)

    def _learn(self, namespace: str, entry_id: int, score: float, good: bool) -> None:
        space = self._space(namespace)
        labels = space.entries.setdefault(entry_id, [])
        if labels and score >= _interval(labels)[1]:
            space.checks[0 if not good else 1] += 1  # a check of the threshold model on this entry
        labels.append((score, good))
        if len(labels) > _MAX_ENTRY_LABELS:
            del labels[0]
        (space.good if good else space.bad)[_bin(score)] += 1

    def forget(self, namespace: str, entry_id: int) -> None:
        """Drop an entry's own labels (the namespace prior keeps them): the entry is gone."""
        with self._mu:
            space = self._spaces.get(namespace)
            if space is not None:
                space.entries.pop(entry_id, None)

    def summary(self, namespace: str) -> dict[str, int]:
        with self._mu:
            space = self._spaces.get(namespace)
            if space is None:
                return {"labels": 0, "bad": 0, "entries": 0}
            return {"labels": sum(space.good) + sum(space.bad), "bad": sum(space.bad),
                    "entries": len(space.entries)}


def _interval(labels: list[tuple[float, bool]]) -> tuple[float, float]:
    """(highest bad score, lowest good score) of one entry's labels; -1 / 2 when there is none."""
    lo, hi = -1.0, 2.0
    for s, good in labels:
        if good:
            hi = min(hi, s)
        else:
            lo = max(lo, s)
    return lo, hi
