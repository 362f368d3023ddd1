"""The task classifier: fit, predict with confidence, save/load, and the shipped default weights."""

from __future__ import annotations

import numpy as np
import pytest

from models import TASKS
from router import StateError, TaskClassifier


def _blobs(n_per: int = 40, dim: int = 384, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(TASKS), dim))
    xs, ys = [], []
    for i, t in enumerate(TASKS):
        x = centers[i] + 0.6 * rng.normal(size=(n_per, dim))
        xs.append(x / np.linalg.norm(x, axis=1, keepdims=True))
        ys += [t] * n_per
    return np.vstack(xs).astype(np.float32), ys


def test_fit_separates_labeled_clusters_and_reports_confidence() -> None:
    x, y = _blobs()
    clf = TaskClassifier.fit(x[::2], y[::2])
    pred = [clf.labels[i] for i in clf.proba(x[1::2]).argmax(1)]
    assert np.mean([p == t for p, t in zip(pred, y[1::2], strict=True)]) > 0.95
    task, conf = clf.predict(x[1])
    assert task in TASKS and 0 < conf <= 1
    assert np.allclose(clf.proba(x[:5]).sum(1), 1.0, atol=1e-5)


def test_save_load_round_trip(tmp_path) -> None:
    x, y = _blobs(10)
    clf = TaskClassifier.fit(x, y, epochs=50)
    clf.save(tmp_path / "c.npz")
    back = TaskClassifier.load(tmp_path / "c.npz")
    assert back.labels == clf.labels
    assert np.allclose(back.proba(x[:3]), clf.proba(x[:3]))
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(StateError, match=r"bad\.npz"):
        TaskClassifier.load(tmp_path / "bad.npz")


def test_bad_labels_are_named() -> None:
    x, _ = _blobs(2)
    with pytest.raises(ValueError, match="poetry"):
        TaskClassifier.fit(x[:3], ["code", "math", "poetry"])


def test_shipped_weights_cover_every_task() -> None:
    clf = TaskClassifier.default()
    assert set(clf.labels) == set(TASKS) and clf.dim == 384
    v = np.zeros(384, dtype=np.float32)
    v[3] = 1
    assert clf.predict(v)[0] in TASKS
