"""``thrifty bench compare``: thrifty side by side with the peers a user would pick instead.

Each peer is installed from PyPI into its own virtual environment by this command (pinned versions,
``bench/peers/``), and run on the same machine, against the same fake upstream and the same data:

* **LiteLLM proxy** vs thrifty's proxy (cache off): added latency over the upstream called directly,
  sequential, rotating thrifty → LiteLLM → direct on every request; then throughput at 32 clients,
  alternating the two proxies over several rounds (best round reported for each).
* **GPTCache** vs thrifty's cache, as libraries: the same replay (OSSChat clusters: lookup, insert on a
  miss; QQP pairs: insert every ``a``, look up every ``b``) with the same embedding model
  (all-MiniLM-L6-v2, offline). Hit-path latency as a whole and without the encoder, precision, recall.

Ratios are peer ÷ thrifty (latency: how many times slower the peer is; throughput: thrifty ÷ peer).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import loadgen as lg
from bench import peers, workload
from bench._procs import BENCH_MODEL, Server, fake_upstream, thrifty_config, thrifty_serve
from bench.report import Report, cmdline, progress

DATA = Path(os.environ.get("THRIFTY_DATA", "../shared/data")) / "cache"
REPLAY_SEED = 13
PATH = "/v1/chat/completions"


# ---------------------------------------------------------------------------------------------- LiteLLM
def litellm_server(py: Path, upstream_port: int, work: Path) -> Server:
    import yaml

    cfg = work / "litellm.yaml"
    cfg.write_text(yaml.safe_dump(peers.litellm_config(f"http://127.0.0.1:{upstream_port}/v1", [BENCH_MODEL])))
    port = lg.free_port()
    return Server("litellm proxy", peers.litellm_command(py, cfg, port), port, work / "litellm.log",
                  health="/health/liveliness", env=peers.LITELLM_ENV, timeout_s=240)


def compare_proxies(py: Path, work: Path, args: argparse.Namespace, report: Report) -> dict[str, Any]:
    body = workload.chat_bytes(workload.prompt(40, 1), model=BENCH_MODEL)
    with fake_upstream(work) as up, thrifty_serve(thrifty_config(up.port, work / "data"), work) as tp, \
            litellm_server(py, up.port, work) as lp:
        t, ll, d = (lg.Endpoint(tp.port, name="thrifty"), lg.Endpoint(lp.port, name="litellm"),
                    lg.Endpoint(up.port, name="direct"))
        st, sl, sd = lg.run(lg.rotate([(t, t.request(PATH, body, {"x-thrifty-cache-mode": "off"})),
                                       (ll, ll.request(PATH, body)), (d, d.request(PATH, body))],
                                      args.seq, warmup=30))
        for s in (st, sl, sd):
            if s.ok == 0:
                raise RuntimeError(f"{s.name}: no successful request; last error: {s.last_error}")
        T, L, D = lg.summarize(st), lg.summarize(sl), lg.summarize(sd)
        add_t, add_l = lg.added(T, D), lg.added(L, D)
        rounds: dict[str, list[lg.Summary]] = {"thrifty": [], "litellm": []}
        with progress("throughput rounds", args.rounds * 2) as advance:
            for _ in range(args.rounds):
                for ep, raw in ((t, t.request(PATH, body, {"x-thrifty-cache-mode": "off"})), (ll, ll.request(PATH, body))):
                    s = lg.run(lg.closed_loop(ep, raw, args.clients, requests=args.requests, duration_s=args.seconds))
                    rounds[ep.name].append(lg.summarize(s))
                    advance(1)
        direct_rps = lg.summarize(lg.run(lg.closed_loop(d, d.request(PATH, body), args.clients,
                                                        requests=args.requests, duration_s=args.seconds)))
    best = {k: max(v, key=lambda s: s.throughput_rps) for k, v in rounds.items()}
    ratios = {"added_p50": _ratio(add_l["p50_ms"], add_t["p50_ms"]), "added_p99": _ratio(add_l["p99_ms"], add_t["p99_ms"]),
              "throughput": _ratio(best["thrifty"].throughput_rps, best["litellm"].throughput_rps)}
    report.table("added latency over the upstream called directly, sequential, cache off (ms)",
                 ["proxy", "n", "added p50", "added p95", "added p99", "total p50", "total p99"],
                 [["thrifty", T.n, add_t["p50_ms"], add_t["p95_ms"], add_t["p99_ms"], T.p50_ms, T.p99_ms],
                  ["LiteLLM", L.n, add_l["p50_ms"], add_l["p95_ms"], add_l["p99_ms"], L.p50_ms, L.p99_ms],
                  ["direct", D.n, None, None, None, D.p50_ms, D.p99_ms],
                  ["LiteLLM ÷ thrifty", None, ratios["added_p50"], None, ratios["added_p99"], None, None]],
                 note="rotation thrifty → LiteLLM → direct on every request")
    report.table(f"throughput at {args.clients} clients (best of {args.rounds} alternating rounds)",
                 ["target", "req/s", "p50 ms", "p99 ms", "errors"],
                 [["thrifty", best["thrifty"].throughput_rps, best["thrifty"].p50_ms, best["thrifty"].p99_ms, best["thrifty"].errors],
                  ["LiteLLM", best["litellm"].throughput_rps, best["litellm"].p50_ms, best["litellm"].p99_ms, best["litellm"].errors],
                  ["direct", direct_rps.throughput_rps, direct_rps.p50_ms, direct_rps.p99_ms, direct_rps.errors],
                  ["thrifty ÷ LiteLLM", ratios["throughput"], None, None, None]])
    return {"sequential": {"thrifty": T, "litellm": L, "direct": D, "added_thrifty": add_t, "added_litellm": add_l},
            "throughput_rounds": rounds, "throughput_best": best, "direct_throughput": direct_rps,
            "ratios": ratios, "litellm_version": peers.installed_version(py, "litellm")}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b and b > 0 and a == a and b == b else None


# ---------------------------------------------------------------------------------------------- replay
def cluster_ops(clusters: list[list[str]], seed: int = REPLAY_SEED) -> tuple[list[list[Any]], list[int]]:
    """Every question, shuffled: look it up, insert it on a miss (answer = its cluster's id)."""
    items = [(q, ci) for ci, cl in enumerate(clusters) for q in cl]
    random.Random(seed).shuffle(items)
    return [["get_put", q, str(ci)] for q, ci in items], [ci for _, ci in items]


def pair_ops(pairs: list[dict[str, Any]]) -> list[list[Any]]:
    """Insert every ``a`` (answer = the pair's index), then look up every ``b``."""
    return [["put", p["a"], str(i)] for i, p in enumerate(pairs)] + [["get", p["b"]] for p in pairs]


def score_clusters(answers: list[str | None], owners: list[int]) -> dict[str, float]:
    seen: set[int] = set()
    possible = hits = correct = 0
    for ans, owner in zip(answers, owners, strict=True):
        possible += owner in seen
        seen.add(owner)
        if ans is not None:
            hits += 1
            correct += ans == str(owner)
    return {"lookups": len(owners), "hits": hits, "correct": correct, "possible": possible,
            "precision": correct / hits if hits else 1.0, "recall": correct / possible if possible else 0.0,
            "false_hit_rate": (hits - correct) / len(owners)}


def score_pairs(answers: list[str | None], pairs: list[dict[str, Any]]) -> dict[str, float]:
    pos = sum(int(p["label"]) == 1 for p in pairs)
    hits = sum(a is not None for a in answers)
    tp = sum(a == str(i) and int(p["label"]) == 1 for i, (a, p) in enumerate(zip(answers, pairs, strict=True)))
    negatives = len(pairs) - pos
    false_on_neg = sum(a is not None and int(p["label"]) == 0 for a, p in zip(answers, pairs, strict=True))
    return {"lookups": len(pairs), "hits": hits, "true_hits": tp, "precision": tp / hits if hits else 1.0,
            "recall": tp / pos if pos else 0.0, "false_hit_rate_on_negatives": false_on_neg / negatives if negatives else 0.0}


class ThriftyReplay:
    """thrifty's cache as a library, through the same steps as the pipeline's hit path:
    scope → exact lookup → encode → semantic lookup (search + guards)."""

    def __init__(self, path: Path) -> None:
        from cache import CacheConfig, SemanticCache, default_encoder

        self.encoder = default_encoder()
        self.encoder.encode(["warm up"])
        name = getattr(self.encoder, "name", "all-MiniLM-L6-v2")
        dim = int(getattr(self.encoder, "dim", 384))
        self.cache = SemanticCache.open(path, name, dim, CacheConfig(durable=False))

    def _scope(self, text: str) -> Any:
        from cache import scope
        from router.types import ChatRequest, Message

        return scope(ChatRequest(messages=[Message(role="user", content=text)], model=BENCH_MODEL))

    def get(self, text: str) -> tuple[str | None, int, int, Any]:
        t0 = time.perf_counter_ns()
        sc = self._scope(text)
        hit = self.cache.lookup_exact(sc)
        enc = 0
        vec = None
        if hit is None:
            t = time.perf_counter_ns()
            vec = self.encoder.encode([sc.text])[0]
            enc = time.perf_counter_ns() - t
            hit = self.cache.lookup(sc, vec)
        total = time.perf_counter_ns() - t0
        return (hit.response.decode() if hit is not None else None), total, enc, (sc, vec)

    def put(self, text: str, answer: str, state: Any = None) -> None:
        sc, vec = state if state is not None else (self._scope(text), None)
        if vec is None:
            vec = self.encoder.encode([sc.text])[0]
        self.cache.insert(sc, vec, answer.encode())

    def run(self, ops: list[list[Any]]) -> dict[str, Any]:
        answers: list[str | None] = []
        total_ns: list[int] = []
        encode_ns: list[int] = []
        for op in ops:
            if op[0] == "put":
                self.put(op[1], op[2])
                continue
            ans, tot, enc, state = self.get(op[1])
            answers.append(ans)
            total_ns.append(tot)
            encode_ns.append(enc)
            if op[0] == "get_put" and ans is None:
                self.put(op[1], op[2], state)
        self.cache.close()
        return {"answers": answers, "total_ns": total_ns, "encode_ns": encode_ns}


def run_gptcache(py: Path, ops: list[list[Any]], threshold: float, work: Path, tag: str) -> dict[str, Any]:
    job = {"gptcache_threshold": threshold, "ops": ops,
           "warmup": [op[1] for op in ops[:50]]}
    job_path, out_path = work / f"gptcache-{tag}-job.json", work / f"gptcache-{tag}-out.json"
    job_path.write_text(json.dumps(job))
    log = work / f"gptcache-{tag}.log"
    with log.open("w") as f:
        rc = subprocess.call(peers.gptcache_command(py, job_path, out_path), stdout=f, stderr=subprocess.STDOUT,
                             env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                  "TOKENIZERS_PARALLELISM": "false"}, timeout=3600)
    if rc != 0:
        raise RuntimeError(f"GPTCache runner failed ({rc}); see {log}:\n{log.read_text()[-2000:]}")
    return dict(json.loads(out_path.read_text()))


def hit_latency(res: dict[str, Any]) -> dict[str, float]:
    """Latency of the lookups that hit, as a whole and without the encoder (ms)."""
    idx = [i for i, a in enumerate(res["answers"]) if a is not None]
    if not idx:
        return {"n": 0}
    tot = np.asarray(res["total_ns"], np.float64)[idx] / 1e6
    enc = np.asarray(res["encode_ns"], np.float64)[idx] / 1e6
    rest = tot - enc
    return {"n": len(idx), "p50_ms": float(np.percentile(tot, 50)), "p99_ms": float(np.percentile(tot, 99)),
            "no_encoder_p50_ms": float(np.percentile(rest, 50)), "no_encoder_p99_ms": float(np.percentile(rest, 99)),
            "encoder_p50_ms": float(np.percentile(enc, 50))}


def thrifty_hit_latency(res: dict[str, Any]) -> dict[str, float]:
    """thrifty's semantic hits only (the encoder ran): exact hits would flatter it."""
    keep = [i for i, (a, e) in enumerate(zip(res["answers"], res["encode_ns"], strict=True)) if a is not None and e > 0]
    sub = {"answers": [res["answers"][i] for i in keep], "total_ns": [res["total_ns"][i] for i in keep],
           "encode_ns": [res["encode_ns"][i] for i in keep]}
    return hit_latency(sub)


def load_data(args: argparse.Namespace) -> tuple[list[list[str]], list[dict[str, Any]]]:
    clusters = json.loads(Path(args.clusters).read_text())
    pairs = [json.loads(line) for line in Path(args.pairs).read_text().splitlines() if line.strip()]
    rng = random.Random(REPLAY_SEED)
    if len(pairs) > args.max_pairs:
        pairs = rng.sample(pairs, args.max_pairs)
    if args.short:
        clusters = clusters[:60]
    return clusters, pairs


def compare_caches(py: Path, work: Path, args: argparse.Namespace, report: Report) -> dict[str, Any]:
    from cache.policy import default_policy

    # The cosine bar of the default policy is its first bar (its threshold is the verifier's probability).
    threshold = float(default_policy().first_bar)
    clusters, pairs = load_data(args)
    c_ops, owners = cluster_ops(clusters)
    p_ops = pair_ops(pairs)
    results: dict[str, Any] = {"thrifty_threshold": threshold, "questions": len(owners), "pairs": len(pairs)}
    sides: dict[str, dict[str, dict[str, Any]]] = {}
    # GPTCache's score is (4 - L2²)/4 = (1 + cos)/2 for unit vectors: the same cosine bar is (1 + t)/2.
    gpt_settings = {"GPTCache (same cosine bar)": (1 + threshold) / 2, "GPTCache (its default 0.8)": 0.8}
    with progress("cache replays", 2 + 2 * len(gpt_settings)) as advance:
        for data, ops in (("clusters", c_ops), ("pairs", p_ops)):
            sides.setdefault("thrifty", {})[data] = ThriftyReplay(work / f"thrifty-{data}").run(ops)
            advance(1)
            for label, thr in gpt_settings.items():
                sides.setdefault(label, {})[data] = run_gptcache(py, ops, thr, work, f"{data}-{thr:.3f}")
                advance(1)
    rows = []
    for label, by in sides.items():
        lat_fn = thrifty_hit_latency if label == "thrifty" else hit_latency
        cl, pr = score_clusters(by["clusters"]["answers"], owners), score_pairs(by["pairs"]["answers"], pairs)
        lat = lat_fn({k: by["clusters"][k] + by["pairs"][k] for k in ("answers", "total_ns", "encode_ns")})
        results[label] = {"clusters": cl, "pairs": pr, "hit_latency": lat}
        rows.append([label, cl["precision"], cl["recall"], pr["precision"], pr["recall"],
                     pr["false_hit_rate_on_negatives"], lat.get("p50_ms"), lat.get("p99_ms"),
                     lat.get("no_encoder_p50_ms"), lat.get("no_encoder_p99_ms"), lat.get("n")])
    t = results["thrifty"]["hit_latency"]
    g = results["GPTCache (same cosine bar)"]["hit_latency"]
    ratios = {"hit_p50": _ratio(g.get("p50_ms", float("nan")), t.get("p50_ms", float("nan"))),
              "hit_no_encoder_p50": _ratio(g.get("no_encoder_p50_ms", float("nan")), t.get("no_encoder_p50_ms", float("nan")))}
    results["ratios"] = ratios
    report.table("cache: the same replay, the same model (all-MiniLM-L6-v2)",
                 ["cache", "clusters P", "clusters R", "QQP P", "QQP R", "QQP false hits on negatives",
                  "hit p50 ms", "hit p99 ms", "no-encoder p50", "no-encoder p99", "hits timed"], rows,
                 note=f"thrifty: its default hit policy (cosine bar {threshold:.2f} + guards + verifier), semantic hits only; "
                      f"GPTCache: sqlite + faiss, SBERT; ratios GPTCache ÷ thrifty: hit p50 {_fmt(ratios['hit_p50'])}, "
                      f"without the encoder {_fmt(ratios['hit_no_encoder_p50'])}")
    return results


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}×"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="thrifty bench compare", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=Path("results/compare"))
    p.add_argument("--peers", default="litellm,gptcache", help="which peers (comma-separated)")
    p.add_argument("--peer-root", type=Path, default=peers.DEFAULT_ROOT, help="where the peers' venvs live")
    p.add_argument("--short", action="store_true", help="a quick run")
    p.add_argument("--seq", type=int, default=1000, help="sequential requests per target")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=6000, help="requests per throughput round")
    p.add_argument("--seconds", type=float, default=8.0, help="time bound per throughput round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clusters", type=Path, default=DATA / "osschat_clusters.json")
    p.add_argument("--pairs", type=Path, default=DATA / "qqp_pairs.jsonl")
    p.add_argument("--max-pairs", type=int, default=2000)
    p.add_argument("--work", type=Path)
    args = p.parse_args(argv)
    if args.short:
        args.seq, args.requests, args.seconds, args.rounds, args.max_pairs = 200, 1500, 3.0, 1, 300
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv or [])
    wanted = [x for x in args.peers.split(",") if x]
    report = Report("compare", args.out, command=cmdline("compare", argv))
    report.note("Preliminary unless stated: figures measured on a shared 2-core machine.")
    pys = {}
    for name in wanted:
        print(f"thrifty bench compare: preparing {name} in {args.peer_root / name} (first time: minutes)")
        pys[name] = peers.ensure(name, args.peer_root)
    with tempfile.TemporaryDirectory(prefix="thrifty-compare-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "litellm" in pys:
            report.data["litellm"] = compare_proxies(pys["litellm"], work, args, report)
        if "gptcache" in pys:
            report.data["gptcache"] = compare_caches(pys["gptcache"], work, args, report)
            report.data["gptcache"]["gptcache_version"] = peers.installed_version(pys["gptcache"], "gptcache")
    report.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
