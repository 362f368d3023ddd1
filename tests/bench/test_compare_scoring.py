"""The comparison's replay protocol and scoring (shared by thrifty and GPTCache), and fault injection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import _inject
from bench.compare import cluster_ops, hit_latency, pair_ops, score_clusters, score_pairs


def test_cluster_ops_cover_every_question_once_and_are_deterministic() -> None:
    clusters = [["a1", "a2", "a3"], ["b1", "b2"], ["c1"]]
    ops, owners = cluster_ops(clusters, seed=1)
    assert sorted(op[1] for op in ops) == ["a1", "a2", "a3", "b1", "b2", "c1"]
    assert all(op[0] == "get_put" and op[2] == str(o) for op, o in zip(ops, owners, strict=True))
    assert cluster_ops(clusters, seed=1) == (ops, owners)


def test_score_clusters() -> None:
    owners = [0, 1, 0, 1, 2, 0]
    # first of each cluster misses; later: one right, one wrong, one missed
    answers: list[str | None] = [None, None, "0", "0", None, None]
    s = score_clusters(answers, owners)
    assert s["possible"] == 3 and s["hits"] == 2 and s["correct"] == 1
    assert s["precision"] == 0.5 and s["recall"] == pytest.approx(1 / 3)
    assert s["false_hit_rate"] == pytest.approx(1 / 6)


def test_pair_ops_and_score() -> None:
    pairs = [{"a": "x", "b": "x'", "label": 1}, {"a": "y", "b": "y'", "label": 0}, {"a": "z", "b": "z'", "label": 1}]
    ops = pair_ops(pairs)
    assert ops[:3] == [["put", "x", "0"], ["put", "y", "1"], ["put", "z", "2"]]
    assert ops[3:] == [["get", "x'"], ["get", "y'"], ["get", "z'"]]
    s = score_pairs(["0", "1", "0"], pairs)  # right, false hit on a negative, wrong entry
    assert s["true_hits"] == 1 and s["hits"] == 3
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == 0.5
    assert s["false_hit_rate_on_negatives"] == 1.0


def test_hit_latency_only_counts_hits_and_splits_the_encoder() -> None:
    res = {"answers": ["1", None, "2"], "total_ns": [10_000_000, 99_000_000, 20_000_000],
           "encode_ns": [8_000_000, 90_000_000, 16_000_000]}
    lat = hit_latency(res)
    assert lat["n"] == 2
    assert lat["p50_ms"] == pytest.approx(15.0)
    assert lat["no_encoder_p50_ms"] == pytest.approx(3.0)


def test_injection_wraps_and_undoes(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.pipeline import Pipeline

    original = Pipeline.lookup
    monkeypatch.delenv(_inject.ENV, raising=False)
    _inject.apply()()
    assert Pipeline.lookup is original
    monkeypatch.setenv(_inject.ENV, "30")
    calls: list[Any] = []

    async def fake(self: Any, ctx: Any) -> str:
        calls.append(ctx)
        return "looked up"

    monkeypatch.setattr(Pipeline, "lookup", fake)
    undo = _inject.apply()
    try:
        loop = asyncio.new_event_loop()
        t = loop.time()
        assert loop.run_until_complete(Pipeline.lookup(object(), "ctx")) == "looked up"  # type: ignore[arg-type]
        assert loop.time() - t >= 0.029 and calls == ["ctx"]
        loop.close()
    finally:
        undo()
    assert Pipeline.lookup is fake


def test_injection_rejects_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_inject.ENV, "sixty")
    with pytest.raises(SystemExit, match="must be a number"):
        _inject.injected_ms()
