"""The learned stage of the hit policy: lazy loading, batching, thresholds, a clear error without files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cache._verify_model import DEFAULT_DIR, LearnedVerifier
from cache.policy import PRESETS, HitPolicy, PolicyConfig, Verdict, VerifierModelError

HIGH = 0.95


@pytest.fixture(scope="module")
def learned() -> HitPolicy:
    """The model at its dev-calibrated threshold and a low first bar: these tests are about the model;
    the preset gates it at cosine 0.92 (test_preset_gates_the_model_at_its_first_bar)."""
    return HitPolicy(PolicyConfig(learned=True))


def test_shipped_model_is_small_and_present() -> None:
    for name in ("verifier.onnx", "tokenizer.json", "learned.json"):
        assert (DEFAULT_DIR / name).is_file(), name
    assert (DEFAULT_DIR / "verifier.onnx").stat().st_size < 25 * 2**20


def test_model_loads_lazily() -> None:
    policy = HitPolicy(PolicyConfig(learned=True))
    assert policy._model is not None and policy._model._session is None
    policy.verify("Same text", "Same text", 0.5)  # identical: decided before the model
    policy.verify("Convert 5 km to miles", "Convert 50 km to miles", HIGH)  # a guard refuses first
    assert policy._model._session is None
    policy.verify("How do I reverse a list in Python?", "how can i reverse a python list", 0.9)
    assert policy._model._session is not None


def test_scores_are_probabilities_and_threshold_override_applies(learned: HitPolicy) -> None:
    q, c = "How do I reverse a list in Python?", "What's the way to reverse a Python list?"
    v = learned.verify(q, c, 0.9)
    assert 0.0 <= v.score <= 1.0
    assert learned.verify(q, c, 0.9, threshold=0.0).accept
    refused = learned.verify(q, c, 0.9, threshold=1.01)
    assert not refused.accept and refused.reason.startswith("verifier")
    assert v.accept == (v.score >= learned.threshold)
    # the cosine first bar still gates, whatever the probability threshold
    assert learned.verify(q, c, learned.first_bar - 0.01, threshold=0.0).reason == "below threshold"


def test_preset_gates_the_model_at_its_first_bar() -> None:
    preset = HitPolicy(PRESETS["learned"])
    q, c = "How do I reverse a list in Python?", "What's the way to reverse a Python list?"
    assert preset.verify(q, c, 0.91, threshold=0.0).reason == "below threshold"
    assert preset.verify(q, c, 0.93, threshold=0.0).accept


def test_learned_stage_separates_clear_cases(learned: HitPolicy) -> None:
    same = learned.verify("What is the capital of France?", "Which city is the capital of France?", 0.93)
    other = learned.verify("How do I install Docker?", "How do I uninstall Docker?", 0.93)
    assert same.accept, same
    assert not other.accept
    different_task = learned.verify(
        "Can you summarize this email for me?", "Can you translate this email for me?", 0.85
    )
    assert different_task.score < same.score


def test_verify_many_is_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = HitPolicy(PolicyConfig(learned=True))
    calls: list[int] = []
    real = LearnedVerifier.logits

    def counting(self: LearnedVerifier, pairs: list[tuple[str, str]]) -> np.ndarray:
        calls.append(len(pairs))
        return real(self, pairs)

    monkeypatch.setattr(LearnedVerifier, "logits", counting)
    query = "How can I speed up my Postgres queries?"
    candidates = [
        ("How do I make Postgres queries faster?", 0.93),
        ("Convert 5 km to miles", 0.2),  # below the first bar: never scored
        ("How can I speed up my Postgres queries?", 0.99),  # identical
        ("How do I make my Postgres queries run quicker?", 0.85),
        ("How can I speed up my MySQL queries?", 0.95),  # the entity guard refuses
    ]
    verdicts = policy.verify_many(query, candidates)
    assert calls == [2]
    assert [v.reason for v in verdicts][1:3] == ["below threshold", "identical"]
    assert verdicts[4].reason.startswith("entity")
    single = [policy.verify(query, c, s) for c, s in candidates]
    assert [v.accept for v in single] == [v.accept for v in verdicts]
    # Each pair runs alone: a verdict is the same whatever else is judged beside it.
    assert [v.score for v in single] == [v.score for v in verdicts]
    assert policy.verify_many(query, []) == []


def test_a_pair_scores_the_same_alone_and_beside_others() -> None:
    """The int8 model's activation scale is per tensor: batched, a long neighbour (and the padding it
    forces) moved a pair's logit by up to one (a probability by 0.3). Pairs now run alone."""
    model = LearnedVerifier()
    pair = ("How do I convert a list of dicts to a DataFrame?", "Turn a list of dictionaries into a pandas frame")
    others = [
        ("Who wrote Moby-Dick?", "Which author wrote Moby-Dick?"),
        (
            "How can I convert a pandas DataFrame into a list of dictionaries, and back again, quickly "
            "for frames with millions of rows and nested columns?",
            "What is the fastest way to turn a huge DataFrame into records?",
        ),
    ]
    alone = model.logits([pair])[0]
    assert model.logits([others[0], pair, others[1]])[1] == alone
    assert model.logits([pair, *others])[0] == alone


def test_learned_policy_refuses_the_near_miss_file_mostly(learned: HitPolicy) -> None:
    import json

    path = Path(__file__).resolve().parents[1] / "data" / "near_misses.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    verdicts = learned.verify_pairs([(r["a"], r["b"], HIGH) for r in rows])
    assert sum(not v.accept for v in verdicts) / len(rows) >= 0.9


def test_missing_model_fails_clearly(tmp_path: Path) -> None:
    policy = HitPolicy(PolicyConfig(learned=True, verifier_dir=str(tmp_path)))
    with pytest.raises(VerifierModelError, match=r"verifier\.onnx.*learned=False"):
        policy.verify("How do I reverse a list?", "Reverse a list, how?", 0.9)
    # the cheap stages still answer without touching the model
    assert policy.verify("a", "a", 0.1) == Verdict(True, 1.0, "identical")


def test_corrupt_model_fails_clearly(tmp_path: Path) -> None:
    for name in ("tokenizer.json", "learned.json"):
        shutil.copy(DEFAULT_DIR / name, tmp_path / name)
    (tmp_path / "verifier.onnx").write_bytes(b"not an onnx model")
    policy = HitPolicy(PolicyConfig(learned=True, verifier_dir=str(tmp_path)))
    with pytest.raises(VerifierModelError, match="cannot load"):
        policy.verify("How do I reverse a list?", "Reverse a list, how?", 0.9)


def test_thresholds_are_the_calibrated_ones() -> None:
    """cache.policy's probability thresholds are the ones calibrate wrote beside the model."""
    import json

    from cache import policy as pol

    meta = json.loads((DEFAULT_DIR / "learned.json").read_text())
    assert pytest.approx(meta["threshold"]) == pol.LEARNED_THRESHOLD
    assert pytest.approx(meta["reach"]) == pol.REACH_THRESHOLD
    assert PolicyConfig(learned=True).effective_threshold == pytest.approx(meta["threshold"])
    assert PRESETS["reach"].effective_threshold == pytest.approx(meta["reach"])
    assert PRESETS["reach"].first_bar == pytest.approx(meta["first_bar"])


def test_learned_switch_changes_threshold_meaning() -> None:
    assert HitPolicy(PolicyConfig()).threshold == pytest.approx(0.96)
    learned = HitPolicy(PolicyConfig(learned=True))
    assert 0.0 < learned.threshold < 1.0
    assert HitPolicy(PolicyConfig(learned=True, threshold=0.5)).threshold == 0.5
    assert HitPolicy(PolicyConfig())._model is None


def test_odd_inputs_do_not_crash(learned: HitPolicy) -> None:
    big = "why is the sky blue " * 55_000
    cases = [
        ("", "hello"),
        ("😀🚀", "😀🛸"),
        ("日本の首都はどこですか", "中国の首都はどこですか"),
        ("\x00\x01", "\u200b"),
        (big[:5000], big[:5000] + "?"),
    ]
    for a, b in cases:
        for sim in (0.7, 0.99, float("nan")):
            assert isinstance(learned.verify(a, b, sim), Verdict)


def test_semantic_cache_batches_the_learned_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SemanticCache.lookup hands every live candidate to verify_many in one call (learned policy)."""
    from cache import CacheConfig, SemanticCache, scope
    from router.types import ChatRequest, Message

    policy = HitPolicy(PolicyConfig(learned=True))
    calls: list[int] = []
    real = HitPolicy.verify_many

    def counting(self: HitPolicy, query: str, candidates: list[tuple[str, float]], threshold=None):
        calls.append(len(candidates))
        return real(self, query, candidates, threshold)

    monkeypatch.setattr(HitPolicy, "verify_many", counting)

    def req(text: str) -> ChatRequest:
        return ChatRequest(model="m", messages=[Message(role="user", content=text)])

    rng = np.random.default_rng(0)
    base = rng.normal(size=384).astype(np.float32)
    base /= np.linalg.norm(base)
    texts = ["How do I make Postgres queries faster?", "How can I speed up MySQL queries?", "Bake bread"]
    with SemanticCache.open(
        tmp_path / "c", "test-encoder", 384, CacheConfig(durable=False), policy=policy
    ) as c:
        for i, t in enumerate(texts):
            v = base + 0.01 * (i + 1) * rng.normal(size=384).astype(np.float32)
            c.insert(scope(req(t)), v / np.linalg.norm(v), b"answer %d" % i)
        hit = c.lookup(scope(req("How can I speed up my Postgres queries?")), base)
    assert calls and calls[0] >= 2
    assert hit is not None and hit.text == texts[0]
