"""Quality predictors: learn from outcomes, beat chance, round-trip, learn more later, plug into the router."""

from __future__ import annotations

import numpy as np
import pytest

from models import Catalog, ModelEntry, Price, Route
from router import (
    Constraints,
    GroupLogisticPredictor,
    KNNPredictor,
    LogisticPredictor,
    Router,
    StateError,
    load_predictor,
    save_predictor,
)
from router.types import ChatRequest, Message


def _outcomes(n: int = 300, seed: int = 1) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Model 'weak' is right only on one half of the space; 'strong' is right everywhere."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    weak = (x[:, 0] > 0).astype(np.float32)
    vecs = np.vstack([x, x])
    models = ["weak"] * n + ["strong"] * n
    return vecs, models, np.concatenate([weak, np.ones(n, dtype=np.float32)])


@pytest.mark.parametrize("cls", [LogisticPredictor, KNNPredictor, GroupLogisticPredictor])
def test_predictor_learns_where_a_model_is_good(cls) -> None:
    x, models, y = _outcomes()
    p = cls.fit(x, models, y)
    assert set(p.models) == {"weak", "strong"}
    probe = np.zeros((2, 16), dtype=np.float32)
    probe[0, 0], probe[1, 0] = 1.0, -1.0
    pred = p.predict(probe)
    w = p.models.index("weak")
    assert pred[0, w] > 0.7 and pred[1, w] < 0.3
    assert pred.shape == (2, 2) and p.predict(probe[0]).shape == (2,)


@pytest.mark.parametrize("cls", [LogisticPredictor, KNNPredictor, GroupLogisticPredictor])
def test_state_round_trips(cls, tmp_path) -> None:
    x, models, y = _outcomes(80)
    p = cls.fit(x, models, y)
    save_predictor(p, tmp_path / "p.npz")
    back = load_predictor(tmp_path / "p.npz")
    assert type(back) is cls and back.models == p.models
    assert np.allclose(back.predict(x[:5]), p.predict(x[:5]), atol=1e-2)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(StateError, match="junk"):
        load_predictor(tmp_path / "junk.npz")


def test_partial_fit_learns_a_new_model_from_logged_outcomes() -> None:
    x, models, y = _outcomes(100)
    p = LogisticPredictor.fit(x, models, y, l2=1.0)
    later = x[:100]
    p2 = p.partial_fit(later, ["newcomer"] * 100, (later[:, 0] < 0).astype(np.float32))
    assert "newcomer" in p2.models and "weak" in p2.models
    probe = np.zeros(16, dtype=np.float32)
    probe[0] = -1.0
    assert p2.predict(probe)[p2.models.index("newcomer")] > 0.7


def _grouped(n: int = 200, seed: int = 2) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """Two clusters of prompts (groups); 'coder' is right in cluster 'code' only, 'chatty' the other way."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.3, size=(2 * n, 16)).astype(np.float32)
    x[:n, 1] += 3.0
    x[n:, 2] += 3.0
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    group = ["code"] * n + ["chat"] * n
    coder = np.r_[np.ones(n), np.zeros(n)].astype(np.float32)
    return np.vstack([x, x]), ["coder"] * (2 * n) + ["chatty"] * (2 * n), np.r_[coder, 1 - coder], group + group


def test_group_logistic_learns_group_skill_and_finds_the_group_from_the_vector(tmp_path) -> None:
    x, models, y, groups = _grouped()
    p = GroupLogisticPredictor.fit(x, models, y, groups=groups)
    assert p.groups == ("chat", "code") and p.l2 in (1.0, 3.0, 10.0, 30.0)
    probe = np.zeros((2, 16), dtype=np.float32)
    probe[0, 1] = probe[1, 2] = 1.0
    assert [p.groups[i] for i in p.group_index(probe)] == ["code", "chat"]
    pred = p.predict(probe)
    c = p.models.index("coder")
    assert pred[0, c] > 0.9 and pred[1, c] < 0.1
    save_predictor(p, tmp_path / "g.npz")
    back = load_predictor(tmp_path / "g.npz")
    assert isinstance(back, GroupLogisticPredictor) and back.groups == p.groups
    # logged outcomes without group labels take their nearest group; a new model is learned
    p2 = back.partial_fit(probe, ["newcomer", "newcomer"], [1.0, 0.0])
    assert "newcomer" in p2.models and p2.predict(probe).shape == (2, 3)
    with pytest.raises(ValueError, match="one group per row"):
        GroupLogisticPredictor.fit(x, models, y, groups=groups[:3])


def test_bad_outcomes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LogisticPredictor.fit(np.zeros((2, 4)), ["a", "b"], [0.5, 2.0])
    with pytest.raises(ValueError, match="n model ids"):
        LogisticPredictor.fit(np.zeros((2, 4)), ["a"], [0.5, 0.5])


def test_router_uses_the_predictor_instead_of_the_prior() -> None:
    x, models, y = _outcomes()
    pred = LogisticPredictor.fit(x, models, y)
    entries = [ModelEntry(id=m, vendor="v", price=Price(p, p), context_window=10_000, max_output=1000,
                          routes=(Route("p", m),), quality={"chat": 0.9}) for m, p in (("weak", 0.1), ("strong", 5.0))]

    class Clf:  # a 16-dim stand-in: the router only needs predict() and dim
        dim = 16

        def predict(self, v):
            return "chat", 1.0

    router = Router(Catalog(entries), predictor=pred, classifier=Clf(), policy="target", quality_target=0.7)  # type: ignore[arg-type]
    req = ChatRequest(messages=[Message(role="user", content="q")])
    good, bad = np.zeros(16, dtype=np.float32), np.zeros(16, dtype=np.float32)
    good[0], bad[0] = 1.0, -1.0
    assert router.rank(req, good, Constraints()).candidates[0].model.id == "weak"
    assert router.rank(req, bad, Constraints()).candidates[0].model.id == "strong"
