"""Learned quality predictors: P(answer is good | prompt vector, model), fitted from labeled outcomes.

Outcomes are rows ``(vector, model id, quality in [0, 1])`` — from a benchmark, or from the engine's own
ledger later (``partial_fit`` appends rows and refits). Two predictors share one small contract:

* ``KNNPredictor`` — the baseline: mean quality of each model over the k nearest training prompts.
* ``LogisticPredictor`` — one L2-regularised logistic regression per model on the unit-norm embedding,
  fitted by Newton's method (exact, deterministic); the L2 strength is chosen on a held-out share of the
  rows. On the RouterBench subsets it beats the k-NN baseline (bench/router_eval.py reports both).

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
    w[-1] = np.log(mean / (1 - mean))
    reg = np.full(a.shape[1], l2)
    reg[-1] = 1e-6
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


_KINDS: dict[str, type[LogisticPredictor] | type[KNNPredictor]] = {"logistic": LogisticPredictor, "knn": KNNPredictor}


def predictor_from_bytes(raw: bytes, source: str = "predictor") -> LogisticPredictor | KNNPredictor:
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


def save_predictor(predictor: LogisticPredictor | KNNPredictor, path: str | Path) -> None:
    Path(path).write_bytes(predictor.to_bytes())


def load_predictor(path: str | Path) -> LogisticPredictor | KNNPredictor:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise StateError(f"cannot read predictor {path}: {exc}") from exc
    return predictor_from_bytes(raw, str(path))
