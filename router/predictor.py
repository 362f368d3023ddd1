"""Learned quality predictors: P(answer is good | prompt vector, model), fitted from labeled outcomes.

Outcomes are rows ``(vector, model id, quality in [0, 1])`` — from a benchmark, or from the engine's own
ledger later (``partial_fit`` appends rows and refits). Two predictors share one small contract:

* ``KNNPredictor`` — the baseline: mean quality of each model over the k nearest training prompts.
* ``LogisticPredictor`` — one L2-regularised logistic regression per model on the unit-norm embedding,
  fitted by Newton's method (exact, deterministic); the L2 strength is chosen on a held-out share of the
  rows (bench/router_eval.py reports it beside the others).
* ``GroupLogisticPredictor`` — the same per-model regression plus a free intercept per (group, model),
  where a group is the kind of work a prompt belongs to (a benchmark, a tenant's workload, a task
  category). A model's skill differs far more between groups than within one, and a shared intercept
  spends the embedding's weights re-learning that. At run time the group is the nearest group centroid
  of the vector (no labels needed); ``fit`` chooses the L2 strength by k-fold cross-validation (log
  loss), or takes one fixed value. The benchmark fixes its L2, and the k-NN's k, by repeated k-fold
  *routing* cross-validation on the train part (bench/router_cv.py), because log loss rewards
  predicting each model's accuracy while routing needs the gap between the cheap and the strong model.
  On RouterBench it wins that cross-validation and is the router the benchmark ships; richer features
  (prompt structure, hashed words), a shared difficulty latent (IRT, low rank), ridge and per-group
  models all did no better there. On RouteLLM (two models, two groups) the k-NN wins it narrowly.

Inference is one matrix product (numpy only). State round-trips through ``to_bytes``/``from_bytes``
(an ``.npz``); the training rows are kept (capped) so later outcomes can be appended and refitted.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from router.errors import StateError

_FORMAT = 1
Qualities = Sequence[float] | np.ndarray
MAX_ROWS = 200_000  # training rows kept for later refits (oldest dropped first)


@runtime_checkable
class QualityPredictor(Protocol):
    models: tuple[str, ...]

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, len(models)) predicted quality; (d,) -> (len(models),)."""
        ...


class _Rows:
    """Training outcomes in row form: vector, model index, quality."""

    def __init__(self, x: np.ndarray, model_idx: np.ndarray, y: np.ndarray, models: Sequence[str]) -> None:
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.model_idx = np.asarray(model_idx, dtype=np.int32)
        self.y = np.asarray(y, dtype=np.float32)
        self.models = tuple(models)

    @classmethod
    def build(cls, vectors: np.ndarray, models: Sequence[str], qualities: Qualities) -> _Rows:
        x = np.asarray(vectors, dtype=np.float32)
        y = np.asarray(qualities, dtype=np.float32)
        if x.ndim != 2 or len(x) != len(models) or len(x) != len(y):
            raise ValueError(f"need (n, d) vectors, n model ids and n qualities; got {x.shape}, {len(models)}, {len(y)}")
        if len(y) and (np.nanmin(y) < 0 or np.nanmax(y) > 1 or np.isnan(y).any()):
            raise ValueError("qualities must lie in [0, 1]")
        names = tuple(sorted(set(models)))
        index = {m: i for i, m in enumerate(names)}
        return cls(x, np.array([index[m] for m in models], dtype=np.int32), y, names)

    def extend(self, other: _Rows) -> _Rows:
        names = tuple(sorted(set(self.models) | set(other.models)))
        index = {m: i for i, m in enumerate(names)}
        remap_a = np.array([index[m] for m in self.models], dtype=np.int32)
        remap_b = np.array([index[m] for m in other.models], dtype=np.int32)
        x = np.concatenate([self.x, other.x])[-MAX_ROWS:]
        mi = np.concatenate([remap_a[self.model_idx], remap_b[other.model_idx]])[-MAX_ROWS:]
        y = np.concatenate([self.y, other.y])[-MAX_ROWS:]
        return _Rows(x, mi, y, names)


def _logistic_newton(x: np.ndarray, y: np.ndarray, l2: float, iters: int = 25) -> np.ndarray:
    """Weights (d+1,) of an L2 logistic regression with soft labels; the bias is not penalised."""
    a = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    w = np.zeros(a.shape[1])
    mean = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
    w[-1] = np.log(mean / (1 - mean))  # start from the base rate: fewer Newton steps
    reg = np.full(a.shape[1], l2)
    reg[-1] = 1e-6
    return _newton(a, y, reg, iters, w)


def _newton(a: np.ndarray, y: np.ndarray, reg: np.ndarray, iters: int = 25,
            w0: np.ndarray | None = None) -> np.ndarray:
    """Weights of a logistic regression on design ``a`` with per-column L2 ``reg`` (soft labels allowed)."""
    w = np.zeros(a.shape[1]) if w0 is None else w0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(a @ w)))
        grad = a.T @ (p - y) + reg * w
        h = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg)
        step = np.linalg.solve(h, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def _holdout(x: np.ndarray, share: float = 0.2) -> np.ndarray:
    h = np.frombuffer(b"".join(hashlib.blake2b(r.tobytes(), digest_size=2).digest() for r in x), dtype=np.uint16)
    return h < share * 65536


class LogisticPredictor:
    """Per-model logistic regression on the prompt embedding."""

    kind = "logistic"

    def __init__(self, models: Sequence[str], weights: np.ndarray, rows: _Rows | None = None, l2: float = 1.0) -> None:
        self.models = tuple(models)
        w = np.asarray(weights, dtype=np.float32)
        self._w = np.ascontiguousarray(w[:, :-1].T)  # (d, m)
        self._b = np.ascontiguousarray(w[:, -1])  # (m,)
        self._rows = rows
        self.l2 = l2

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        z = vectors @ self._w + self._b
        return 1.0 / (1.0 + np.exp(-z))

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        models: Sequence[str],
        qualities: Qualities,
        *,
        l2: float | Sequence[float] = (3.0, 10.0, 30.0),
    ) -> LogisticPredictor:
        """Fit from outcome rows; a sequence of ``l2`` values is searched on a held-out 20% by log loss."""
        return cls._fit_rows(_Rows.build(vectors, models, qualities), l2)

    @classmethod
    def _fit_rows(cls, rows: _Rows, l2: float | Sequence[float]) -> LogisticPredictor:
        grid = [float(l2)] if isinstance(l2, int | float) else [float(v) for v in l2]
        best = grid[0]
        if len(grid) > 1:
            test = _holdout(rows.x)
            losses = []
            for lam in grid:
                probe = cls._solve(rows, lam, ~test)
                p = np.clip(probe.predict(rows.x[test])[np.arange(int(test.sum())), rows.model_idx[test]], 1e-6, 1 - 1e-6)
                yt = rows.y[test]
                losses.append(float(-(yt * np.log(p) + (1 - yt) * np.log(1 - p)).mean()))
            best = grid[int(np.argmin(losses))]
        return cls._solve(rows, best, np.ones(len(rows.y), dtype=bool), keep=True)

    @classmethod
    def _solve(cls, rows: _Rows, l2: float, mask: np.ndarray, keep: bool = False) -> LogisticPredictor:
        weights = []
        for j in range(len(rows.models)):
            sel = mask & (rows.model_idx == j)
            if not sel.any():
                weights.append(np.zeros(rows.x.shape[1] + 1))
                continue
            weights.append(_logistic_newton(rows.x[sel], rows.y[sel], l2))
        return cls(rows.models, np.stack(weights), rows if keep else None, l2)

    def partial_fit(self, vectors: np.ndarray, models: Sequence[str], qualities: Qualities) -> LogisticPredictor:
        """A new predictor refitted on the kept rows plus these outcomes (same L2 strength)."""
        new = _Rows.build(vectors, models, qualities)
        rows = self._rows.extend(new) if self._rows is not None else new
        return self._fit_rows(rows, self.l2)

    # ------------------------------------------------------------------------------------------ state
    def to_bytes(self) -> bytes:
        w = np.hstack([self._w.T, self._b[:, None]])
        extra: dict[str, np.ndarray] = {}
        if self._rows is not None:
            extra = {"rows_x": self._rows.x.astype(np.float16), "rows_m": self._rows.model_idx, "rows_y": self._rows.y}
        buf = io.BytesIO()
        np.savez_compressed(buf, format=np.array(_FORMAT), kind=np.array(self.kind), models=np.array(self.models),
                            weights=w, l2=np.array(self.l2), **extra)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def _from_npz(cls, z: np.lib.npyio.NpzFile) -> LogisticPredictor:
        models = [str(m) for m in z["models"]]
        rows = _Rows(z["rows_x"], z["rows_m"], z["rows_y"], models) if "rows_x" in z else None
        return cls(models, z["weights"], rows, float(z["l2"]))


class KNNPredictor:
    """Baseline: a model's mean quality over the k most similar training prompts (cosine)."""

    kind = "knn"

    def __init__(self, x: np.ndarray, y: np.ndarray, models: Sequence[str], k: int = 40) -> None:
        self._x = np.ascontiguousarray(x, dtype=np.float32)  # (n, d) unique prompts
        self._y = np.asarray(y, dtype=np.float32)  # (n, m), NaN where a model was not observed
        self.models = tuple(models)
        self.k = k

    @classmethod
    def fit(cls, vectors: np.ndarray, models: Sequence[str], qualities: Qualities, *, k: int = 40) -> KNNPredictor:
        rows = _Rows.build(vectors, models, qualities)
        keys = [r.tobytes() for r in rows.x]
        uniq: dict[bytes, int] = {}
        for key in keys:
            uniq.setdefault(key, len(uniq))
        x = np.zeros((len(uniq), rows.x.shape[1]), dtype=np.float32)
        y = np.full((len(uniq), len(rows.models)), np.nan, dtype=np.float32)
        for i, key in enumerate(keys):
            x[uniq[key]] = rows.x[i]
            y[uniq[key], rows.model_idx[i]] = rows.y[i]
        return cls(x, y, rows.models, k)

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        single = vectors.ndim == 1
        q = vectors[None, :] if single else vectors
        sims = q @ self._x.T
        k = min(self.k, self._x.shape[0])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        out = np.nanmean(self._y[idx], axis=1)
        out = np.where(np.isnan(out), np.nanmean(self._y, axis=0), out)
        return np.asarray(out[0] if single else out)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, format=np.array(_FORMAT), kind=np.array(self.kind), models=np.array(self.models),
                            x=self._x.astype(np.float16), y=self._y, k=np.array(self.k))
        return buf.getvalue()

    @classmethod
    def _from_npz(cls, z: np.lib.npyio.NpzFile) -> KNNPredictor:
        return cls(z["x"].astype(np.float32), z["y"], [str(m) for m in z["models"]], int(z["k"]))


class GroupLogisticPredictor:
    """Per-model logistic regression on the embedding with a free intercept per (group, model)."""

    kind = "group_logistic"

    def __init__(self, models: Sequence[str], weights: np.ndarray, group_bias: np.ndarray, centroids: np.ndarray,
                 groups: Sequence[str], l2: float = 3.0, rows: _Rows | None = None,
                 row_groups: np.ndarray | None = None) -> None:
        self.models = tuple(models)
        self.groups = tuple(groups)
        self._w = np.ascontiguousarray(np.asarray(weights, dtype=np.float32).T)  # (d, m)
        self._g = np.ascontiguousarray(group_bias, dtype=np.float32)  # (groups, m)
        self._c = np.ascontiguousarray(np.asarray(centroids, dtype=np.float32).T)  # (d, groups)
        self.l2 = l2
        self._rows = rows
        self._row_groups = row_groups

    def group_index(self, vectors: np.ndarray) -> np.ndarray:
        """Index into ``groups`` of the nearest group centroid, per vector (a scalar for one vector)."""
        return np.argmax(vectors @ self._c, axis=-1)

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        z = vectors @ self._w + self._g[self.group_index(vectors)]
        return 1.0 / (1.0 + np.exp(-z))

    @classmethod
    def fit(cls, vectors: np.ndarray, models: Sequence[str], qualities: Qualities, *,
            groups: Sequence[str] | None = None, l2: float | Sequence[float] = (1.0, 3.0, 10.0, 30.0),
            folds: int = 5) -> GroupLogisticPredictor:
        """Fit from outcome rows; ``groups`` labels each row (default: one group); a sequence of ``l2``
        values is searched by ``folds``-fold cross-validation on log loss (folds by prompt vector)."""
        rows = _Rows.build(vectors, models, qualities)
        labels = ["all"] * len(rows.y) if groups is None else [str(g) for g in groups]
        if len(labels) != len(rows.y):
            raise ValueError(f"need one group per row; got {len(labels)} groups for {len(rows.y)} rows")
        names = tuple(sorted(set(labels)))
        gi = np.searchsorted(np.array(names), np.array(labels)).astype(np.int32)
        return cls._fit_rows(rows, gi, names, l2, folds)

    @classmethod
    def _fit_rows(cls, rows: _Rows, gi: np.ndarray, names: tuple[str, ...], l2: float | Sequence[float],
                  folds: int = 5) -> GroupLogisticPredictor:
        grid = [float(l2)] if isinstance(l2, int | float) else [float(v) for v in l2]
        best = grid[0]
        if len(grid) > 1 and folds > 1:
            fold = np.frombuffer(b"".join(hashlib.blake2b(r.tobytes(), digest_size=2).digest() for r in rows.x),
                                 dtype=np.uint16) % folds
            losses = []
            for lam in grid:
                loss = 0.0
                for k in range(folds):
                    held = fold == k
                    w, gb = cls._solve(rows, gi, len(names), lam, ~held)
                    z = np.einsum("nd,nd->n", rows.x[held], w[rows.model_idx[held]]) + gb[gi[held], rows.model_idx[held]]
                    p = np.clip(1.0 / (1.0 + np.exp(-z)), 1e-6, 1 - 1e-6)
                    yt = rows.y[held]
                    loss -= float((yt * np.log(p) + (1 - yt) * np.log(1 - p)).sum())
                losses.append(loss)
            best = grid[int(np.argmin(losses))]
        w, gb = cls._solve(rows, gi, len(names), best, np.ones(len(rows.y), dtype=bool))
        centroids = np.stack([rows.x[gi == g].mean(axis=0) if (gi == g).any() else np.zeros(rows.x.shape[1])
                              for g in range(len(names))])
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        return cls(rows.models, w, gb, centroids, names, best, rows, gi)

    @staticmethod
    def _solve(rows: _Rows, gi: np.ndarray, n_groups: int, l2: float, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(m, d) weights and (groups, m) intercepts; the one-hot group columns are barely penalised."""
        d = rows.x.shape[1]
        w = np.zeros((len(rows.models), d))
        gb = np.zeros((n_groups, len(rows.models)))
        reg = np.concatenate([np.full(d, l2), np.full(n_groups, 0.1)])
        for j in range(len(rows.models)):
            sel = mask & (rows.model_idx == j)
            if not sel.any():
                continue
            a = np.hstack([rows.x[sel].astype(np.float64), np.eye(n_groups)[gi[sel]]])
            coef = _newton(a, rows.y[sel].astype(np.float64), reg)
            w[j], gb[:, j] = coef[:d], coef[d:]
        return w, gb

    def partial_fit(self, vectors: np.ndarray, models: Sequence[str], qualities: Qualities, *,
                    groups: Sequence[str] | None = None) -> GroupLogisticPredictor:
        """A new predictor refitted on the kept rows plus these outcomes (same L2 strength). New rows
        without ``groups`` take the group of their nearest centroid."""
        new = _Rows.build(vectors, models, qualities)
        if groups is None:
            labels = [self.groups[int(i)] for i in self.group_index(new.x)]
        else:
            labels = [str(g) for g in groups]
        old_labels = ([] if self._rows is None or self._row_groups is None
                      else [self.groups[int(i)] for i in self._row_groups])
        rows = self._rows.extend(new) if self._rows is not None else new
        all_labels = (old_labels + labels)[-len(rows.y):]
        names = tuple(sorted(set(all_labels)))
        gi = np.searchsorted(np.array(names), np.array(all_labels)).astype(np.int32)
        return self._fit_rows(rows, gi, names, self.l2)

    def to_bytes(self) -> bytes:
        extra: dict[str, np.ndarray] = {}
        if self._rows is not None and self._row_groups is not None:
            extra = {"rows_x": self._rows.x.astype(np.float16), "rows_m": self._rows.model_idx,
                     "rows_y": self._rows.y, "rows_g": self._row_groups}
        buf = io.BytesIO()
        np.savez_compressed(buf, format=np.array(_FORMAT), kind=np.array(self.kind), models=np.array(self.models),
                            weights=self._w.T, group_bias=self._g, centroids=self._c.T, groups=np.array(self.groups),
                            l2=np.array(self.l2), **extra)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def _from_npz(cls, z: np.lib.npyio.NpzFile) -> GroupLogisticPredictor:
        models = [str(m) for m in z["models"]]
        rows = _Rows(z["rows_x"], z["rows_m"], z["rows_y"], models) if "rows_x" in z else None
        row_groups = z.get("rows_g")
        return cls(models, z["weights"], z["group_bias"], z["centroids"], [str(g) for g in z["groups"]],
                   float(z["l2"]), rows, row_groups)


AnyPredictor = LogisticPredictor | KNNPredictor | GroupLogisticPredictor
_KINDS: dict[str, type[LogisticPredictor] | type[KNNPredictor] | type[GroupLogisticPredictor]] = {
    "logistic": LogisticPredictor, "knn": KNNPredictor, "group_logistic": GroupLogisticPredictor}


def predictor_from_bytes(raw: bytes, source: str = "predictor") -> AnyPredictor:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            if int(z["format"]) != _FORMAT:
                raise StateError(f"{source}: predictor format {int(z['format'])}, expected {_FORMAT}")
            kind = str(z["kind"])
            if kind not in _KINDS:
                raise StateError(f"{source}: unknown predictor kind {kind!r}; known: {', '.join(_KINDS)}")
            return _KINDS[kind]._from_npz(z)
    except (OSError, KeyError, ValueError) as exc:
        raise StateError(f"{source}: not a predictor file: {exc}") from exc


def save_predictor(predictor: AnyPredictor, path: str | Path) -> None:
    Path(path).write_bytes(predictor.to_bytes())


def load_predictor(path: str | Path) -> AnyPredictor:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise StateError(f"cannot read predictor {path}: {exc}") from exc
    return predictor_from_bytes(raw, str(path))
