"""Routing decision latency without the encoder: the shipped catalog (>= 30 models), every provider
available (the most candidates to score), the default classifier and a learned predictor.

    .venv/bin/python -m pytest bench/test_router_perf.py --benchmark-only -p no:cacheprovider -s

Budget (issue 3): p99 <= 0.2 ms per decision. The p99 is computed from our own per-call timings
(pytest-benchmark reports mean/median/IQR, not percentiles) and written to results/router/perf.json.
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from models import Catalog
from router import Constraints, GroupLogisticPredictor, Router
from router.types import ChatRequest, FunctionDef, Message, Tool

P99_BUDGET_MS = 0.2
SAMPLES = 2_000 if os.environ.get("THRIFTY_BENCH_SHORT") else 20_000
RESULTS = Path(__file__).resolve().parents[1] / "results" / "router"


def _router() -> Router:
    catalog = Catalog.default()
    assert len(catalog) >= 30
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = list(catalog.ids)[:12]
    models = [ids[i % len(ids)] for i in range(len(x))]
    groups = [("arc", "mbpp", "winogrande")[i % 3] for i in range(len(x))]  # the shipped predictor's shape
    pred = GroupLogisticPredictor.fit(x, models, (rng.random(len(x)) > 0.3).astype(np.float32), groups=groups, l2=10.0)
    return Router(catalog, predictor=pred, available_providers=None)


def _requests() -> list[tuple[ChatRequest, np.ndarray, Constraints]]:
    rng = np.random.default_rng(1)
    out = []
    texts = ["Write a Python function that parses ISO dates.", "Summarise the meeting notes below. " * 40,
             "What is the capital of Peru?", "Translate 'good morning' into Japanese."]
    for i in range(64):
        v = rng.normal(size=384).astype(np.float32)
        v /= np.linalg.norm(v)
        tools = [Tool(function=FunctionDef(name="lookup"))] if i % 4 == 0 else None
        req = ChatRequest(messages=[Message(role="system", content="You are helpful."),
                                    Message(role="user", content=texts[i % len(texts)])], tools=tools)
        cons = Constraints(tenant="t", deny_models=("grok-4",), max_cost_usd=0.05 if i % 2 else None,
                           open_deployments={"openai/gpt-4o"}, policy=("balanced", "quality", "cost", "target")[i % 4])
        out.append((req, v, cons))
    return out


def test_route_decision_p99(benchmark) -> None:
    router = _router()
    cases = _requests()
    state = {"i": 0}

    def one() -> None:
        req, v, cons = cases[state["i"] % len(cases)]
        state["i"] += 1
        router.rank(req, v, cons)

    benchmark.pedantic(one, rounds=2_000, iterations=1, warmup_rounds=200)
    timings = np.empty(SAMPLES)
    gc.disable()
    try:
        for k in range(SAMPLES):
            req, v, cons = cases[k % len(cases)]
            t0 = time.perf_counter_ns()
            router.rank(req, v, cons)
            timings[k] = time.perf_counter_ns() - t0
    finally:
        gc.enable()
    ms = timings / 1e6
    stats = {"models": len(router.catalog), "deployments": len(router.table.dep_name), "samples": SAMPLES,
             "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
             "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "perf.json").write_text(json.dumps(stats, indent=1) + "\n")
    print("\nroute decision:", json.dumps(stats))
    benchmark.extra_info.update(stats)
    assert stats["p99_ms"] <= P99_BUDGET_MS, stats


@pytest.mark.parametrize("n", [1])
def test_classifier_and_predictor_are_microseconds(benchmark, n: int) -> None:
    router = _router()
    v = np.ones(384, dtype=np.float32) / np.sqrt(384)
    benchmark(lambda: (router.classifier.predict(v), router.predictor.predict(v)))  # type: ignore[union-attr]
