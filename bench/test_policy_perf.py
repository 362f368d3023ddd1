"""Cost of the hit verifier per candidate, cold (both prompts analysed) and warm (analyses cached).

    .venv/bin/python -m pytest bench/test_policy_perf.py --benchmark-only -s

Each test times every call on its own to report p50 / p99 (pytest-benchmark reports means and
medians only), stores them in the benchmark's extra_info, prints them, and holds the verifier to
its share of the hit-path budget: well under a millisecond per candidate (p50 asserted; p99 is
printed, since on a shared 2-core machine it mostly measures the neighbours).
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

import numpy as np
import pytest

from bench.test_cache_perf import report
from cache.policy import HitPolicy, default_policy

NEAR_MISSES = Path(__file__).resolve().parents[1] / "tests" / "data" / "near_misses.jsonl"
PARAPHRASES = [
    ("How do I reverse a list in Python?", "What's the way to reverse a Python list?"),
    ("What is 15 percent of 200?", "Calculate fifteen percent of two hundred."),
    ("Explain how photosynthesis works in simple terms.", "Describe photosynthesis in an easy way."),
    (
        "How can I set a boundary with a coworker who texts late?",
        "How do I tell a colleague not to text me at night?",
    ),
]
WARM_P50_BUDGET_US = 100.0
COLD_P50_BUDGET_US = 300.0


def _pairs() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in NEAR_MISSES.read_text().splitlines() if line.strip()]
    return [(r["a"], r["b"]) for r in rows] + PARAPHRASES


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    return {"p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)), "n": len(us)}


def _time_calls(policy: HitPolicy, pairs: list[tuple[str, str]], rounds: int) -> list[int]:
    samples = []
    gc.disable()  # a collection landing in one call says nothing about the verifier
    try:
        for _ in range(rounds):
            for a, b in pairs:
                t0 = time.perf_counter_ns()
                policy.verify(a, b, 0.93)
                samples.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return samples


@pytest.mark.benchmark(group="policy")
def test_verify_warm(benchmark) -> None:
    """The common case: the query is analysed once per lookup and popular entries stay cached."""
    pairs = _pairs()
    policy = default_policy()
    for a, b in pairs:
        policy.verify(a, b, 0.93)
    stats = _percentiles(_time_calls(policy, pairs, rounds=20))
    a, b = pairs[0]
    benchmark(policy.verify, a, b, 0.93)
    report(benchmark, "verify warm", stats)
    assert stats["p50_us"] < WARM_P50_BUDGET_US


@pytest.mark.benchmark(group="policy")
def test_verify_cold(benchmark) -> None:
    """Worst case: neither prompt was seen before, both are tokenised and analysed in the call."""
    pairs = _pairs()
    samples: list[int] = []
    for _ in range(5):
        policy = default_policy()
        policy.verify("warm up", "the lexicon", 0.99)  # loading word lists is init, not per candidate
        samples += _time_calls(policy, pairs, rounds=1)
    stats = _percentiles(samples)

    def cold_call() -> None:
        policy._analyses.clear()
        policy.verify(*pairs[0], 0.93)

    policy = default_policy()
    policy.verify("warm up", "the lexicon", 0.99)
    benchmark(cold_call)
    report(benchmark, "verify cold", stats)
    # p99 is reported, not asserted: on a shared 2-core machine it measures the neighbours
    assert stats["p50_us"] < COLD_P50_BUDGET_US


@pytest.mark.benchmark(group="policy")
def test_verify_long_prompt(benchmark) -> None:
    """A 1 MB prompt is analysed on a bounded prefix, so it costs about what a long prompt does."""
    policy = default_policy()
    big = "Summarise the following log and list every error it reports. " * 16_000
    policy.verify("warm up", "the lexicon", 0.99)

    def call() -> None:
        policy._analyses.clear()
        policy.verify(big, big + " Also count the warnings.", 0.95)

    benchmark(call)
    assert benchmark.stats.stats.median < 0.005


# ------------------------------------------------------------------------------ learned stage
LEARNED_QUERY = "How do I convert a list of dictionaries into a pandas DataFrame?"
LEARNED_CANDIDATES = [
    "What's the best way to turn a list of dicts into a pandas dataframe?",
    "How can I convert a pandas DataFrame into a list of dictionaries?",
    "Convert list of dicts to DataFrame in pandas",
]


@pytest.mark.benchmark(group="policy-learned")
@pytest.mark.parametrize("n_pairs", [1, 4, 16])
def test_learned_stage(benchmark, n_pairs: int) -> None:
    """The cross-encoder's forward pass for 1, 4 and 16 short pairs (one batch), int8 ONNX, 1 thread."""
    from cache._verify_model import LearnedVerifier

    model = LearnedVerifier()
    pairs = [(LEARNED_QUERY, c) for c in (LEARNED_CANDIDATES * 6)[:n_pairs]]
    for _ in range(30):
        model.logits(pairs)
    samples = []
    gc.disable()
    try:
        for _ in range(300):
            t0 = time.perf_counter_ns()
            model.logits(pairs)
            samples.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    stats = _percentiles(samples)
    benchmark(model.logits, pairs)
    report(benchmark, f"learned stage, {n_pairs} pair(s)", stats)
    # ~3 ms a pair on the shared 2-core machine, linear in the batch (issue 14: 3.8 / 12.6 / 47.6 ms p50
    # for 1 / 4 / 16 through verify_many, results/cache/verifier_latency.json)
    assert stats["p50_us"] < 5_000 * n_pairs


@pytest.mark.benchmark(group="policy-learned")
def test_whole_hit_path_learned(benchmark, tmp_path: Path) -> None:
    """The whole semantic hit path (scope + encode + search + guards + cross-encoder + payload) with
    the "learned" preset, prompts <= 64 tokens; same set-up as bench/test_cache_perf.py's."""
    from bench.test_cache_perf import SHORT_PAIRS, time_hit_path
    from cache import CacheConfig, SemanticCache, default_encoder
    from cache.policy import PRESETS

    enc = default_encoder()
    enc.encode(["warm up"])
    policy = HitPolicy(PRESETS["learned"])
    with SemanticCache.open(
        tmp_path / "c", enc.name, enc.dim, CacheConfig(durable=False), policy=policy
    ) as c:
        stats = time_hit_path(benchmark, c, enc, [*SHORT_PAIRS, (LEARNED_QUERY, LEARNED_CANDIDATES[0])])
    hits = stats["semantic_hits"]
    report(benchmark, "whole semantic hit path with the learned stage, <=64 tokens", stats)
    assert hits >= 1
    assert stats["p50_us"] <= 12_000 and stats["p99_us"] <= 25_000
