"""Replays of the shared cache data: adaptive thresholds (cache/adaptive.py) against static thresholds, and
shadow mode's false-hit estimate against the truth.

    python -m bench.adaptive_replay [--orders 20] [--delta 0.02] [--feedback 0.3] [--qqp-limit 0] [--out DIR]

Both replays use the real hit policy (the "cosine" preset's guards and verdicts: its score is the cosine) and the real adaptive gate on
all-MiniLM-L6-v2 vectors; the cache itself is simulated in memory (top-3 neighbours by cosine, as the cache's
index returns them), so that thousands of replays take seconds. Labels reach the adaptive gate only the way they
would in production: the verdict of an exploration (the fresh answer compared with the cached one: the
truth here, i.e. a perfect comparison), and feedback on a served hit with probability ``--feedback`` (a hit rated
bad is withdrawn at once, as ``POST /v1/feedback`` does).

* **OSSChat** (233 intent clusters, 607 questions): each order asks every question once into an empty cache; a
  miss stores the question; a hit is correct only inside its own cluster. ``cold``: every order starts with an
  empty gate; ``warm``: the gate's namespace labels carry over from order to order (a deployment that has run
  for a while; the entries themselves are new each order).
* **QQP as a question stream**: each pair in a random order; its first question is cached, the second asked;
  the pair's label says whether the cached answer may be served.

Static thresholds: every threshold of the grid replayed the same way (the guards stay on); the "best in
hindsight" is the one with the most hits whose false-hit rate is at most delta, chosen after seeing every
label. Figures (pooled over orders, Wilson 95 % intervals):

* hit rate = hits / requests;
* false-hit rate = wrong hits / requests (vCache's error rate: the share of answers that are wrong because of
  the cache), with wrong hits / hits beside it.

**Shadow estimate**: the OSSChat replay in shadow mode at the default threshold, with answers simulated per
intent (an answer is its cluster's first question in a sentence, one of a few phrasings picked at random each
time it is generated, so two answers to one intent are near-identical, as at temperature 0) and compared by
engine.shadow's encoder rule (cosine >= 0.85, its default): the share of would-be hits judged bad against the true share.

Writes ``adaptive.json`` and ``adaptive.md`` to the out dir (default results/cache/adaptive-<date>).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cache.adaptive import AdaptiveConfig, AdaptiveGate, wilson_interval

DATA = Path("../shared/data/cache")
NS = "replay/default"
TOP_K = 3
GRID = [round(float(t), 3) for t in np.arange(0.80, 0.996, 0.005)]


@dataclass
class Stream:
    """One replay: questions in order; ``truth(i, j)`` says whether question j's answer serves question i."""

    texts: list[str]
    vecs: np.ndarray
    intent: list[int]  # same intent = a correct reuse (clusters); for pairs, the pair's id
    candidates_of: Any = None  # pairs: the fixed candidate of each query (no search)
    label: list[int] = field(default_factory=list)  # pairs: the pair's label
    queries: list[int] = field(default_factory=list)  # indexes asked, in order


class Judge:
    """The "cosine" hit policy's verdicts at threshold -1, memoised per (query, candidate)."""

    def __init__(self) -> None:
        from cache.policy import PRESETS, HitPolicy

        self.policy = HitPolicy(PRESETS["cosine"])
        self.memo: dict[tuple[str, str], tuple[bool, float, str]] = {}

    def verdict(self, q: str, c: str, cos: float) -> tuple[bool, float, str]:
        key = (q, c)
        v = self.memo.get(key)
        if v is None:
            r = self.policy.verify(q, c, cos, -1.0)
            v = self.memo[key] = (bool(r.accept), float(r.score), r.reason)
        return v

    def accepts(self, q: str, c: str, cos: float, t: float) -> tuple[bool, float]:
        ok, score, reason = self.verdict(q, c, cos)
        if reason == "identical":
            return True, 1.0
        return ok and cos >= min(self.policy.first_bar, t) and score >= t, score


# ---------------------------------------------------------------------------------------------- streams
def cluster_stream(clusters: list[list[str]], encode: Any, seed: int) -> Stream:
    texts = [q for c in clusters for q in c]
    intent = [i for i, c in enumerate(clusters) for _ in c]
    order = np.random.default_rng(seed).permutation(len(texts)).tolist()
    return Stream(texts, encode(texts), intent, queries=order)


def pair_stream(data: Any, encode: Any, seed: int) -> Stream:
    """Labelled pairs (``.a``, ``.b``, ``.label``) as a stream: a cached, b asked, in a seeded order."""
    n = len(data.label)
    texts = list(data.a) + list(data.b)
    order = np.random.default_rng(seed).permutation(n).tolist()
    return Stream(texts, encode(texts), list(range(n)) * 2, candidates_of=lambda i: i - n,
                  label=list(data.label), queries=[n + i for i in order])


# ---------------------------------------------------------------------------------------------- replay
@dataclass
class Tally:
    requests: int = 0
    hits: int = 0
    wrong: int = 0
    must_miss: int = 0  # requests with no correct entry in the cache (clusters) / label-0 pairs
    explored: int = 0
    labels: int = 0

    def add(self, other: Tally) -> None:
        for k in ("requests", "hits", "wrong", "must_miss", "explored", "labels"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def figures(self) -> dict[str, Any]:
        hr = wilson_interval(self.hits, self.requests)
        fr = wilson_interval(self.wrong, self.requests)
        return {"requests": self.requests, "hits": self.hits, "wrong": self.wrong, "explored": self.explored,
                "labels": self.labels, "hit_rate": self.hits / max(self.requests, 1), "hit_rate_ci": list(hr),
                "false_hit_rate": self.wrong / max(self.requests, 1), "false_hit_rate_ci": list(fr),
                "wrong_of_hits": self.wrong / max(self.hits, 1),
                "wrong_of_must_miss": self.wrong / max(self.must_miss, 1)}


def _correct(s: Stream, q: int, c: int) -> bool:
    if s.candidates_of is not None:
        return bool(s.label[s.intent[q]])
    return s.intent[q] == s.intent[c]


def _neighbours(s: Stream, q: int, stored: list[int], vecs: np.ndarray | None) -> list[tuple[int, float]]:
    if s.candidates_of is not None:
        c = s.candidates_of(q)
        return [(c, float(s.vecs[q] @ s.vecs[c]))]
    if not stored or vecs is None:
        return []
    sims = vecs[: len(stored)] @ s.vecs[q]
    top = np.argsort(-sims)[:TOP_K]
    return [(stored[i], float(sims[i])) for i in top]


def run(s: Stream, judge: Judge, *, threshold: float | None = None, gate: AdaptiveGate | None = None,
        feedback: float = 0.0, rng: np.random.Generator | None = None) -> Tally:
    """One replay with a static ``threshold`` or the adaptive ``gate``."""
    rng = rng or np.random.default_rng(0)
    tally = Tally()
    stored: list[int] = []
    vecs = np.zeros((len(s.queries), s.vecs.shape[1]), np.float32) if s.candidates_of is None else None
    intents_in: dict[int, int] = {}
    floor = gate.floor if gate is not None else 0.0
    static = judge.policy.threshold if threshold is None else threshold
    for q in s.queries:
        tally.requests += 1
        if gate is not None:
            gate.seen(NS)
        if s.candidates_of is not None:
            tally.must_miss += int(not s.label[s.intent[q]])
        else:
            tally.must_miss += int(intents_in.get(s.intent[q], 0) == 0)
        served = explored = None
        for c, cos in _neighbours(s, q, stored, vecs):
            if gate is None:
                ok, _ = judge.accepts(s.texts[q], s.texts[c], cos, static)
                if ok:
                    served = c
                    break
                continue
            ok, score = judge.accepts(s.texts[q], s.texts[c], cos, min(static, floor))
            if not ok:
                continue
            ident = judge.verdict(s.texts[q], s.texts[c], cos)[2] == "identical"
            decision = "serve" if ident else gate.decide(NS, c, score)
            if decision == "serve":
                served = c
                if not ident and rng.random() < feedback:  # the user rates the served answer
                    good = _correct(s, q, c)
                    gate.learn(NS, c, score, good)
                    tally.labels += 1
                    if not good and c in stored:  # withdrawn at once
                        idx = stored.index(c)
                        stored.pop(idx)
                        if vecs is not None:
                            vecs[idx : len(stored)] = vecs[idx + 1 : len(stored) + 1]
                        intents_in[s.intent[c]] -= 1
                break
            if decision == "explore":
                explored = (c, score)
                break
        if served is not None:
            tally.hits += 1
            tally.wrong += int(not _correct(s, q, served))
            continue
        if explored is not None and gate is not None:  # fresh answer compared with the cached one: a label
            c, score = explored
            gate.learn(NS, c, score, _correct(s, q, c))
            tally.explored += 1
            tally.labels += 1
        if s.candidates_of is None and vecs is not None:  # a miss stores the question
            vecs[len(stored)] = s.vecs[q]
            stored.append(q)
            intents_in[s.intent[q]] = intents_in.get(s.intent[q], 0) + 1
    return tally


def replay(s: Stream, *, delta: float, feedback: float, seed: int, bound: str = "namespace") -> dict[str, Any]:
    """One adaptive replay of a stream (used by ``thrifty tune --deltas``)."""
    gate = AdaptiveGate(AdaptiveConfig(enabled=True, delta=delta, bound=bound), seed=seed)  # type: ignore[arg-type]
    return run(s, Judge(), gate=gate, feedback=feedback, rng=np.random.default_rng(seed)).figures()


def best_static(tallies: dict[float, Tally], delta: float) -> tuple[float, Tally] | None:
    ok = [(t, ty) for t, ty in tallies.items() if ty.wrong / max(ty.requests, 1) <= delta]
    return max(ok, key=lambda x: (x[1].hits, -x[1].wrong)) if ok else None


# ---------------------------------------------------------------------------------------------- shadow
_PHRASES = ("{}", "Sure. {}", "Here is the answer: {}", "{} Hope this helps.")


def shadow_estimate(clusters: list[list[str]], encode: Any, orders: int, text_threshold: float = 0.85
                    ) -> dict[str, Any]:
    """Shadow mode at the default threshold: the estimated share of wrong would-be hits against the truth."""
    judge = Judge()
    rng = np.random.default_rng(7)
    heads = [f"About '{c[0]}': the answer for this question." for c in clusters]
    answers = [p.format(h) for h in heads for p in _PHRASES]
    avec = dict(zip(answers, encode(answers), strict=True))
    true_bad = est_bad = would = reasks = reask_bad = 0
    for seed in range(orders):
        s = cluster_stream(clusters, encode, seed)
        stored: list[int] = []
        vecs = np.zeros((len(s.queries), s.vecs.shape[1]), np.float32)
        answer_of: dict[int, str] = {}
        for q in s.queries:
            fresh = _PHRASES[rng.integers(len(_PHRASES))].format(heads[s.intent[q]])
            hit = None
            for c, cos in _neighbours(s, q, stored, vecs):
                if judge.accepts(s.texts[q], s.texts[c], cos, judge.policy.threshold)[0]:
                    hit = c
                    break
            if hit is None:
                vecs[len(stored)] = s.vecs[q]
                stored.append(q)
                answer_of[q] = fresh
                if rng.random() < 0.5:  # the same question asked again, shadowed: an exact would-be hit
                    again = _PHRASES[rng.integers(len(_PHRASES))].format(heads[s.intent[q]])
                    reasks += 1
                    reask_bad += int(again != fresh and float(avec[again] @ avec[fresh]) < text_threshold)
                continue
            would += 1
            true_bad += int(s.intent[hit] != s.intent[q])
            cached = answer_of[hit]
            same = " ".join(cached.split()).casefold() == " ".join(fresh.split()).casefold()
            est_bad += int(not same and float(avec[cached] @ avec[fresh]) < text_threshold)
    lo, hi = wilson_interval(est_bad, would)
    noise = reask_bad / max(reasks, 1)
    return {"would_be_hits": would, "true_wrong_share": true_bad / max(would, 1),
            "estimated_wrong_share": est_bad / max(would, 1), "estimated_ci": [lo, hi],
            "exact_reasks": reasks, "comparator_false_bad": noise,
            "corrected_wrong_share": corrected(est_bad / max(would, 1), noise),
            "corrected_ci": [corrected(lo, noise), corrected(hi, noise)],
            "true_wrong": true_bad, "judged_wrong": est_bad, "text_threshold": text_threshold}


def corrected(observed: float, false_bad: float) -> float:
    """The wrong share once the comparator's own false "bad" rate (measured on exact re-asks, whose cached
    answer is right by definition) is taken out: observed = true + (1 - true) x false_bad."""
    if false_bad >= 1.0:
        return observed
    return min(1.0, max(0.0, (observed - false_bad) / (1.0 - false_bad)))


# ---------------------------------------------------------------------------------------------- main
def _encoder() -> Any:
    from bench.tune import _encoder as enc

    return enc()


def _adaptive(streams: list[Stream], delta: float, feedback: float, warm: bool, judge: Judge, bound: str) -> Tally:
    adaptive = Tally()
    cfg = AdaptiveConfig(enabled=True, delta=delta, bound=bound)  # type: ignore[arg-type]
    gate = AdaptiveGate(cfg, seed=0)
    for i, s in enumerate(streams):
        if not warm:
            gate = AdaptiveGate(cfg, seed=i)
        adaptive.add(run(s, judge, gate=gate, feedback=feedback, rng=np.random.default_rng(i)))
    return adaptive


def compare(streams: list[Stream], delta: float, feedback: float, warm: bool, judge: Judge) -> dict[str, Any]:
    """Adaptive at ``delta`` (both bounds) against every static threshold, pooled over ``streams``."""
    per_request = _adaptive(streams, delta, feedback, warm, judge, "request")
    adaptive = _adaptive(streams, delta, feedback, warm, judge, "namespace")
    statics: dict[float, Tally] = {}
    for t in GRID:
        tally = Tally()
        for s in streams:
            tally.add(run(s, judge, threshold=t))
        statics[t] = tally
    best = best_static(statics, delta)
    default = Tally()
    for s in streams:
        default.add(run(s, judge))
    return {"adaptive": adaptive.figures(), "adaptive_per_request": per_request.figures(), "best_static": None if best is None else
            {"threshold": best[0], **best[1].figures()}, "default_static": {
                "threshold": judge.policy.threshold, **default.figures()},
            "static_curve": {str(t): ty.figures() for t, ty in statics.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="adaptive_replay", description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=20)
    p.add_argument("--delta", type=float, default=0.02)
    p.add_argument("--feedback", type=float, default=0.3, help="share of served hits rated by a user")
    p.add_argument("--qqp-limit", type=int, default=0, help="use the first N QQP pairs (0: all)")
    p.add_argument("--qqp-streams", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(f"results/cache/adaptive-{time.strftime('%Y-%m-%d')}"))
    p.add_argument("--render", type=Path, help="only rewrite adaptive.md from this adaptive.json")
    args = p.parse_args(argv)
    if args.render:
        md = render(json.loads(args.render.read_text()))
        (args.render.parent / "adaptive.md").write_text(md)
        print(md)
        return 0
    from bench.tune import load_pairs

    encode = _encoder()
    judge = Judge()
    clusters = json.loads((DATA / "osschat_clusters.json").read_text())
    t0 = time.time()
    oss = [cluster_stream(clusters, encode, seed) for seed in range(args.orders)]
    out: dict[str, Any] = {"delta": args.delta, "feedback": args.feedback, "orders": args.orders}
    out["osschat_cold"] = compare(oss, args.delta, args.feedback, False, judge)
    out["osschat_warm"] = compare(oss, args.delta, args.feedback, True, judge)
    pairs = load_pairs(DATA / "qqp_pairs.jsonl", None)
    if args.qqp_limit:
        pairs.a, pairs.b, pairs.label = pairs.a[: args.qqp_limit], pairs.b[: args.qqp_limit], pairs.label[: args.qqp_limit]
    qqp = [pair_stream(pairs, encode, seed) for seed in range(args.qqp_streams)]
    out["qqp_stream"] = compare(qqp, args.delta, args.feedback, False, judge)
    out["shadow"] = shadow_estimate(clusters, encode, args.orders)
    out["seconds"] = round(time.time() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adaptive.json").write_text(json.dumps(out, indent=2))
    md = render(out)
    (args.out / "adaptive.md").write_text(md)
    print(md)
    return 0


def _row(name: str, f: dict[str, Any]) -> str:
    return (f"| {name} | {f['hit_rate']:.4f} [{f['hit_rate_ci'][0]:.4f}, {f['hit_rate_ci'][1]:.4f}] | "
            f"{f['false_hit_rate']:.4f} [{f['false_hit_rate_ci'][0]:.4f}, {f['false_hit_rate_ci'][1]:.4f}] | "
            f"{f['wrong_of_hits']:.4f} | {f['requests']} | {f.get('labels', 0)} |")


def matched_static(r: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The static threshold with the most hits whose false-hit rate is at most the adaptive run's."""
    bound = r["adaptive"]["false_hit_rate"]
    ok = [(t, f) for t, f in r["static_curve"].items() if f["false_hit_rate"] <= bound]
    return max(ok, key=lambda x: x[1]["hit_rate"]) if ok else None


def render(out: dict[str, Any]) -> str:
    lines = [f"# Adaptive thresholds vs static, delta = {out['delta']}, feedback on {out['feedback']:.0%} of "
             f"served hits, {out['orders']} OSSChat orders", ""]
    for key, title in (("osschat_cold", "OSSChat, every order from an empty cache and an empty gate"),
                       ("osschat_warm", "OSSChat, the gate's labels carried over orders"),
                       ("qqp_stream", "QQP as a question stream")):
        r = out[key]
        lines += [f"## {title}", "", "| setting | hit rate [95% CI] | false-hit rate (wrong/requests) [95% CI] | "
                  "wrong/hits | requests | labels |", "|---|---|---|---|---|---|",
                  _row(f"adaptive delta={out['delta']}, bound namespace", r["adaptive"]),
                  _row(f"adaptive delta={out['delta']}, bound request", r["adaptive_per_request"])]
        if r["best_static"] is not None:
            lines.append(_row(f"best static in hindsight (t={r['best_static']['threshold']})", r["best_static"]))
        matched = matched_static(r)
        if matched is not None:
            lines.append(_row(f"best static at the adaptive's own error (t={matched[0]})", matched[1]))
        lines += [_row(f"default static (t={r['default_static']['threshold']})", r["default_static"]), ""]
    s = out["shadow"]
    lines += ["## Shadow mode's estimate (OSSChat, default threshold)", "",
              f"would-be hits {s['would_be_hits']}: true wrong share {s['true_wrong_share']:.4f}, "
              f"shadow estimate {s['estimated_wrong_share']:.4f} [{s['estimated_ci'][0]:.4f}, "
              f"{s['estimated_ci'][1]:.4f}] (encoder rule, cosine >= {s['text_threshold']}); difference "
              f"{abs(s['true_wrong_share'] - s['estimated_wrong_share']) * 100:.2f} points", "",
              f"Corrected for the comparator's false 'bad' rate on {s['exact_reasks']} shadowed exact re-asks "
              f"({s['comparator_false_bad']:.4f}): {s['corrected_wrong_share']:.4f} [{s['corrected_ci'][0]:.4f}, "
              f"{s['corrected_ci'][1]:.4f}]; difference "
              f"{abs(s['true_wrong_share'] - s['corrected_wrong_share']) * 100:.2f} points", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
