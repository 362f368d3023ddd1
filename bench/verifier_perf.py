"""Latency of the default hit policy's learned verifier, and of a semantic hit that runs it, through the proxy.

    python -m bench.verifier_perf [--out results/cache] [--calls 300] [--hits 300]

1. The verifier alone: `HitPolicy.verify_many` for one query against 1, 4 and 16 candidates that all
   reach the model (one call each, every pair run alone), p50/p99 over `--calls` calls, 1 thread.
2. The whole semantic hit path through the proxy: the fake upstream and `thrifty serve` with `--policy`
   (default "reach": its first bar, 0.60, lets all four candidates through; the model's cost is the same
   for every learned preset); four stored prompts are neighbours above the first bar of each query, so
   each lookup judges four candidates in one call. Latency as the client
   sees it, of the requests answered by a semantic hit (`x-thrifty-cache`), prompts <= 64 tokens.
Writes verifier_latency.json to the out folder and prints a table.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

# Four stored prompts and the queries: all about resetting a forgotten password of one product (one
# product, so that the four nearest entries are these and every lookup judges all four).
PRODUCT = "Acme CRM"
STORED = (
    "How do I reset my password for my {p} account?",
    "I forgot my {p} password, how can I recover it?",
    "What are the steps to change a forgotten {p} password?",
    "Can you help me reset the password of my {p} login?",
)
QUERIES = (
    "I lost my {p} password - how do I get a new one?",
    "What's the way to reset a forgotten {p} password?",
    "Help me recover my {p} account password.",
    "How can I set a new password for {p} after forgetting the old one?",
    "{p}: forgot password, what now?",
)
CANDIDATES = [
    "What's the best way to turn a list of dicts into a pandas dataframe?",
    "How can I convert a pandas DataFrame into a list of dictionaries?",
    "Convert list of dicts to DataFrame in pandas",
    "Turn a list of Python dictionaries into a pandas data frame, how?",
    "pandas: build a DataFrame from a list of dict objects",
    "How do I create a DataFrame out of a list of dictionaries in pandas?",
    "Make a pandas DataFrame from list of dicts",
    "list of dictionaries to pandas DataFrame conversion",
]
QUERY_ALONE = "How do I convert a list of dictionaries into a pandas DataFrame?"


def _pcts(ns: list[int]) -> dict[str, float]:
    ms = np.asarray(ns, dtype=np.float64) / 1e6
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def verifier_alone(calls: int) -> dict[str, Any]:
    from cache.policy import default_policy

    policy = default_policy()
    # Only candidates that the guards pass reach the model (the others cost microseconds).
    verdicts = policy.verify_many(QUERY_ALONE, [(c, 0.95) for c in CANDIDATES])
    reaching = [c for c, v in zip(CANDIDATES, verdicts, strict=True) if v.reason == "ok" or v.reason.startswith("verifier")]
    out: dict[str, Any] = {"candidates_reaching_the_model": len(reaching)}
    for n in (1, 4, 16):
        cands = [(c, 0.95) for c in (reaching * 16)[:n]]  # above every preset's first bar
        for _ in range(20):
            policy.verify_many(QUERY_ALONE, cands)
        samples: list[int] = []
        gc.disable()
        try:
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                policy.verify_many(QUERY_ALONE, cands)
                samples.append(time.perf_counter_ns() - t0)
        finally:
            gc.enable()
        out[str(n)] = _pcts(samples)
    return out


def _judged(preset: str) -> list[int]:
    """For each query, how many stored prompts reach the learned stage (first bar and guards passed)."""
    from cache import default_encoder
    from cache.policy import PRESETS, HitPolicy

    enc, policy = default_encoder(), HitPolicy(PRESETS[preset])
    out = []
    for q in QUERIES:
        vecs = enc.encode([q.format(p=PRODUCT), *(s.format(p=PRODUCT) for s in STORED)])
        cos = vecs[1:] @ vecs[0]
        out.append(
            sum(
                policy._cheap(q.format(p=PRODUCT), s.format(p=PRODUCT), float(c), -1.0) is None
                for s, c in zip(STORED, cos, strict=True)
            )
        )
    return out


def _with_policy(config: dict[str, Any], preset: str) -> dict[str, Any]:
    cache = dict(config["cache"])  # type: ignore[call-overload]
    return {**config, "cache": {**cache, "policy": preset}}


def through_proxy(hits: int, work: Path, preset: str) -> dict[str, Any]:
    from bench import loadgen as lg
    from bench import workload
    from bench._procs import BENCH_MODEL, fake_upstream, thrifty_config, thrifty_serve

    path = "/v1/chat/completions"
    with fake_upstream(work) as up, thrifty_serve(_with_policy(thrifty_config(up.port, work / "data"), preset), work) as proxy:
        ep = lg.Endpoint(proxy.port, name="thrifty")
        stored = [workload.chat_bytes(s.format(p=PRODUCT), model=BENCH_MODEL) for s in STORED]
        prime = lg.run(lg.sequential(ep, lambda i: ep.request(path, stored[i]), len(stored), warmup=0))
        if prime.errors:
            raise SystemExit(f"verifier_perf: priming failed: {prime.last_error}")
        asks = [ep.request(path, workload.chat_bytes(q.format(p=PRODUCT), model=BENCH_MODEL)) for q in QUERIES]
        s = lg.run(
            lg.sequential(ep, lambda i: asks[i % len(asks)], hits, warmup=len(asks), keep_headers=("x-thrifty-cache",))
        )
    outcomes = s.header_values.get("x-thrifty-cache", [])
    # x-thrifty-cache: "hit" is a semantic hit, "exact" an exact one, "miss" a miss
    semantic = [ns for ns, o in zip(s.latency_ns, outcomes, strict=False) if o == "hit"]
    return {
        "outcomes": dict(Counter(outcomes)),
        "semantic_hits": _pcts(semantic) if semantic else None,
        "all": _pcts(s.latency_ns),
        "errors": s.errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/cache"))
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--hits", type=int, default=300)
    ap.add_argument("--no-proxy", action="store_true")
    ap.add_argument("--policy", default="reach", help="the cache preset of the proxy run")
    args = ap.parse_args(argv)
    res: dict[str, Any] = {"verifier": verifier_alone(args.calls)}
    for n, st in res["verifier"].items():
        if not isinstance(st, dict):
            continue
        print(f"verify_many, {n:>2} candidate(s): p50 {st['p50_ms']:.2f} ms  p99 {st['p99_ms']:.2f} ms")
    if not args.no_proxy:
        res["policy"] = args.policy
        res["candidates_judged_per_query"] = _judged(args.policy)
        with tempfile.TemporaryDirectory(prefix="thrifty-verifier-perf-") as tmp:
            res["proxy"] = through_proxy(args.hits, Path(tmp), args.policy)
        sem = res["proxy"]["semantic_hits"]
        print(f"candidates judged by the verifier per query: {res['candidates_judged_per_query']}")
        print(f"proxy outcomes: {res['proxy']['outcomes']}")
        if sem:
            print(f"semantic hit through the proxy: n {sem['n']} p50 {sem['p50_ms']:.2f} ms p99 {sem['p99_ms']:.2f} ms")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "verifier_latency.json").write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
