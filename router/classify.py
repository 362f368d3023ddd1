"""Task classification from the prompt's embedding (the vector the cache already computed).

A multinomial logistic regression over the unit-norm MiniLM vector: one matrix product and a softmax at
inference (microseconds, numpy only). Trainable from labeled examples with ``fit``; saved as a small
``.npz``. The package ships default weights fitted on ``router/data/task_seeds.jsonl``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from models.schema import TASKS
from router.errors import StateError

_FORMAT = 1
DEFAULT_WEIGHTS = "task_classifier.npz"


class TaskClassifier:
    """``predict(vector) -> (task, confidence)``; ``fit(vectors, labels)`` learns the weights."""

    __slots__ = ("bias", "labels", "weights")

    def __init__(self, weights: np.ndarray, bias: np.ndarray, labels: Sequence[str]) -> None:
        if weights.shape != (weights.shape[0], len(labels)) or bias.shape != (len(labels),):
            raise StateError(f"classifier shapes disagree: weights {weights.shape}, bias {bias.shape}, {len(labels)} labels")
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)
        self.labels = tuple(labels)

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    # ------------------------------------------------------------------------------------------ inference
    def proba(self, vectors: np.ndarray) -> np.ndarray:
        """Class probabilities, (n, classes) for (n, d) input or (classes,) for one vector."""
        logits = vectors @ self.weights + self.bias
        logits = logits - logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=-1, keepdims=True)

    def predict(self, vector: np.ndarray) -> tuple[str, float]:
        p = self.proba(vector)
        i = int(p.argmax())
        return self.labels[i], float(p[i])

    # ------------------------------------------------------------------------------------------ training
    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        labels: Sequence[str],
        *,
        l2: float = 1e-3,
        epochs: int = 300,
        lr: float = 0.1,
        seed: int = 0,
    ) -> TaskClassifier:
        """Full-batch Adam on the softmax cross-entropy with an L2 penalty (deterministic for a seed)."""
        x = np.asarray(vectors, dtype=np.float64)
        if x.ndim != 2 or len(x) != len(labels) or len(x) == 0:
            raise ValueError(f"fit needs (n, d) vectors and n labels; got {x.shape} and {len(labels)}")
        unknown = sorted(set(labels) - set(TASKS))
        if unknown:
            raise ValueError(f"labels {unknown} are not tasks; tasks are {', '.join(TASKS)}")
        classes = [t for t in TASKS if t in set(labels)]
        index = {t: i for i, t in enumerate(classes)}
        y = np.zeros((len(x), len(classes)))
        y[np.arange(len(x)), [index[t] for t in labels]] = 1.0
        rng = np.random.default_rng(seed)
        w = rng.normal(0, 0.01, (x.shape[1], len(classes)))
        b = np.zeros(len(classes))
        params = [w, b]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        for step in range(1, epochs + 1):
            logits = x @ w + b
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            g = (p - y) / len(x)
            grads = [x.T @ g + l2 * w, g.sum(axis=0)]
            for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
                m[i] = 0.9 * m[i] + 0.1 * grad
                v[i] = 0.999 * v[i] + 0.001 * grad * grad
                mhat = m[i] / (1 - 0.9**step)
                vhat = v[i] / (1 - 0.999**step)
                param -= lr * mhat / (np.sqrt(vhat) + 1e-8)
        return cls(w, b, classes)

    # ------------------------------------------------------------------------------------------ state
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, format=np.array(_FORMAT), weights=self.weights, bias=self.bias, labels=np.array(self.labels))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, raw: bytes, source: str = "classifier") -> TaskClassifier:
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                if int(z["format"]) != _FORMAT:
                    raise StateError(f"{source}: classifier format {int(z['format'])}, expected {_FORMAT}")
                return cls(z["weights"], z["bias"], [str(s) for s in z["labels"]])
        except (OSError, KeyError, ValueError) as exc:
            raise StateError(f"{source}: not a task classifier file: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> TaskClassifier:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise StateError(f"cannot read classifier {path}: {exc}") from exc
        return cls.from_bytes(raw, str(path))

    @classmethod
    def default(cls) -> TaskClassifier:
        """The weights shipped in the package (fitted on router/data/task_seeds.jsonl)."""
        raw = resources.files("router").joinpath("data", DEFAULT_WEIGHTS).read_bytes()
        return cls.from_bytes(raw, f"router/data/{DEFAULT_WEIGHTS}")
