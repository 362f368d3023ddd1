"""Quality of the semantic cache's hit decision: plain cosine against the hit policy.

    python -m bench.cache_quality [--pairs FILE ...] [--negatives FILE ...] [--whole FILE ...]
                                  [--clusters FILE] [--out DIR]

Pair files are JSONL `{a, b, label}` (label 1: may share an answer, 0: must not). A pair file with
both labels is evaluated on its own; positive-only files (paraphrases) are pooled with each
`--negatives` file (near-misses) in turn ("paraphrases+<negatives>"). A QQP-style file is split
deterministically by a hash of the pair and only its held-out half is reported ("<name>:heldout"),
because the lexicon and the verifier's training saw the other half. `--whole` files (e.g. the
verifier's held-out generated templates) are evaluated whole. Clusters (JSON list of lists of
questions) are replayed into an empty cache: a hit is correct only inside its own cluster.
The policy judged is the default preset (cache.policy.DEFAULT_PRESET); every preset is reported too.

Writes `quality.json` (every number) and `quality.png` (the curves) to the out dir.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from bench._embed_cache import EmbeddingCache, named_encoder
from cache.policy import COSINE_THRESHOLD, DEFAULT_PRESET, PRESETS, HitPolicy, Verdict

DATA = Path(os.environ.get("THRIFTY_DATA", "../shared/data")) / "cache"
DEFAULT_PAIRS = [DATA / "qqp_pairs.jsonl", DATA / "llm_paraphrases.jsonl"]
DEFAULT_NEGATIVES = [Path("tests/data/near_misses.jsonl"), Path("tests/data/near_misses_fresh.jsonl")]
DEFAULT_CLUSTERS = DATA / "osschat_clusters.json"
DEFAULT_OUT = Path("results/cache")
THRESHOLDS = [round(t, 3) for t in np.arange(0.50, 0.991, 0.01)]
REPLAY_SEED = 0


@dataclass
class PairSet:
    name: str
    a: list[str] = field(default_factory=list)
    b: list[str] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)


def heldout(a: str, b: str) -> bool:
    """The deterministic half of a pair file that no choice of this package was made on."""
    return hashlib.sha256(f"{a}\x00{b}".encode()).digest()[0] % 2 == 1


def load_pairs(paths: list[Path], negatives: list[Path], whole: list[Path] | None = None) -> list[PairSet]:
    sets: list[PairSet] = []
    positives: list[dict] = []
    for path in paths:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        labels = {int(r["label"]) for r in rows}
        if labels == {1}:
            positives += rows
            continue
        full = PairSet(path.stem)
        _extend(full, rows)
        split = PairSet(f"{path.stem}:heldout")
        _extend(split, [r for r in rows if heldout(r["a"], r["b"])])
        sets += [split, full]
    for path in whole or []:
        ps = PairSet(path.stem)
        _extend(ps, [json.loads(line) for line in path.read_text().splitlines() if line.strip()])
        sets.append(ps)
    pooled = []
    for path in negatives:
        ps = PairSet(f"paraphrases+{path.stem}")
        _extend(ps, positives)
        _extend(ps, [json.loads(line) for line in path.read_text().splitlines() if line.strip()])
        pooled.append(ps)
    if positives and not negatives:
        ps = PairSet("paraphrases")
        _extend(ps, positives)
        pooled.append(ps)
    return pooled + sets


def _extend(ps: PairSet, rows: list[dict]) -> None:
    for r in rows:
        ps.a.append(r["a"])
        ps.b.append(r["b"])
        ps.label.append(int(r["label"]))
        ps.kind.append(str(r.get("kind", r.get("domain", ""))))


def _curve(accept_at: list[np.ndarray], labels: np.ndarray, grid: list[float]) -> dict[str, list[float]]:
    pos = max(int(labels.sum()), 1)
    neg = max(int((1 - labels).sum()), 1)
    out: dict[str, list[float]] = {
        "threshold": grid,
        "precision": [],
        "recall": [],
        "false_hit_rate": [],
    }
    for acc in accept_at:
        tp = int((acc & (labels == 1)).sum())
        fp = int((acc & (labels == 0)).sum())
        out["precision"].append(tp / (tp + fp) if tp + fp else 1.0)
        out["recall"].append(tp / pos)
        out["false_hit_rate"].append(fp / neg)
    return out


PROB_THRESHOLDS = [round(t, 3) for t in np.arange(0.05, 0.991, 0.01)]


class Scored:
    """Every verdict of one policy at threshold -1, memoised per (query, candidate): what a verdict
    at any threshold is follows from it (`accepts`), so sweeps and replays score each pair once."""

    def __init__(self, policy: HitPolicy) -> None:
        self.policy = policy
        self.learned = policy.config.learned
        self.grid = PROB_THRESHOLDS if self.learned else THRESHOLDS
        self._memo: dict[tuple[str, str, float], Verdict] = {}

    def verdicts(self, a: list[str], b: list[str], cos: np.ndarray) -> list[Verdict]:
        keys = [(x, y, float(c)) for x, y, c in zip(a, b, cos, strict=True)]
        todo = list(dict.fromkeys(k for k in keys if k not in self._memo))
        for k, v in zip(todo, self.policy.verify_pairs(todo, threshold=-1.0), strict=True):
            self._memo[k] = v
        return [self._memo[k] for k in keys]

    def accepts(self, v: Verdict, cos: float, t: float) -> bool:
        """The verdict `policy.verify(..., threshold=t)` gives (checked against it in the tests)."""
        if v.reason == "identical":
            return True
        gate = self.policy.first_bar if self.learned else min(self.policy.first_bar, t)
        return v.accept and cos >= gate and v.score >= t

    def decide(self, t: float | None = None):
        t = self.policy.threshold if t is None else t

        def decide(q: str, c: str, s: float) -> bool:
            return self.accepts(self.verdicts([q], [c], np.array([s]))[0], s, t)

        return decide


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def _best_recall(curve: dict[str, list[float]], max_fhr: float) -> dict[str, float]:
    best = {"recall": 0.0, "threshold": float("nan"), "false_hit_rate": 0.0}
    for t, r, f in zip(curve["threshold"], curve["recall"], curve["false_hit_rate"], strict=True):
        if f <= max_fhr and r > best["recall"]:
            best = {"recall": r, "threshold": t, "false_hit_rate": f}
    return best


def _point(acc: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    tp = int((acc & (labels == 1)).sum())
    fp = int((acc & (labels == 0)).sum())
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / max(int(labels.sum()), 1),
        "false_hit_rate": fp / max(int((1 - labels).sum()), 1),
        "hits": tp + fp,
    }


def _ranking(sc: Scored, verdicts: list[Verdict], cos: np.ndarray) -> np.ndarray:
    """One score per pair that orders the policy's decisions (for average precision): identical
    first, then what reaches the last stage by its score, then what a guard refused, by cosine."""
    identical = np.array([v.reason == "identical" for v in verdicts])
    reach = np.array([v.accept for v in verdicts]) & (cos >= sc.policy.first_bar)
    scores = np.array([v.score for v in verdicts])
    return np.where(identical, 3.0, np.where(reach, scores, cos - 2.0))


def evaluate_pairs(
    ps: PairSet, vecs: dict[str, np.ndarray], scored: Scored, presets: dict[str, Scored]
) -> dict:
    labels = np.asarray(ps.label, dtype=np.int64)
    va = np.stack([vecs[t] for t in ps.a])
    vb = np.stack([vecs[t] for t in ps.b])
    cos = np.einsum("ij,ij->i", va, vb).astype(np.float64)
    policy = scored.policy
    t0 = time.perf_counter()
    verdicts = scored.verdicts(ps.a, ps.b, cos)
    verify_s = time.perf_counter() - t0

    def accept_at(sc: Scored, vs: list[Verdict], t: float) -> np.ndarray:
        return np.array([sc.accepts(v, c, t) for v, c in zip(vs, cos, strict=True)])

    cos_acc = [cos >= t for t in THRESHOLDS]
    pol_acc = [accept_at(scored, verdicts, t) for t in scored.grid]
    default = accept_at(scored, verdicts, policy.threshold)
    at_presets = {}
    for name, sc in presets.items():
        vs = sc.verdicts(ps.a, ps.b, cos)
        curve = _curve([accept_at(sc, vs, t) for t in sc.grid], labels, sc.grid)
        at_presets[name] = {
            "threshold": sc.policy.threshold,
            "learned": sc.learned,
            "average_precision": average_precision(_ranking(sc, vs, cos), labels),
            "best_recall_at_fhr_2pct": _best_recall(curve, 0.02),
            "best_recall_at_fhr_1pct": _best_recall(curve, 0.01),
            "cosine_at_same_threshold": _point(cos >= sc.policy.threshold, labels),
            **_point(accept_at(sc, vs, sc.policy.threshold), labels),
        }
    cosine_curve, policy_curve = _curve(cos_acc, labels, THRESHOLDS), _curve(pol_acc, labels, scored.grid)
    reasons: dict[str, int] = {}
    for acc, v, lab in zip(default, verdicts, labels, strict=True):
        if not acc:
            why = v.reason if not v.accept else "below threshold"
            key = f"{'neg' if lab == 0 else 'pos'}:{why.split(':')[0]}"
            reasons[key] = reasons.get(key, 0) + 1
    missed_by_kind: dict[str, int] = {}
    for acc, lab, kind in zip(default, labels, ps.kind, strict=True):
        if acc and lab == 0:
            missed_by_kind[kind] = missed_by_kind.get(kind, 0) + 1
    policy_scores = _ranking(scored, verdicts, cos)
    return {
        "pairs": len(labels),
        "positives": int(labels.sum()),
        "verify_us_per_pair": 1e6 * verify_s / max(len(labels), 1),
        "cosine": {
            "average_precision": average_precision(cos, labels),
            "curve": cosine_curve,
            "best_recall_at_fhr_2pct": _best_recall(cosine_curve, 0.02),
            "at_default_threshold": _point(cos >= COSINE_THRESHOLD, labels),
        },
        "policy": {
            "average_precision": average_precision(policy_scores, labels),
            "curve": policy_curve,
            "best_recall_at_fhr_2pct": _best_recall(policy_curve, 0.02),
            "best_recall_at_fhr_1pct": _best_recall(policy_curve, 0.01),
            "at_default": _point(default, labels),
            "guard_rejections": dict(sorted(reasons.items())),
            "false_hits_by_kind_at_default": missed_by_kind,
            "presets": at_presets,
        },
    }


def replay(
    clusters: list[list[str]], vecs: dict[str, np.ndarray], decide, top_k: int, seed: int | None
) -> dict[str, float]:
    """Replay every question into an empty cache: a lookup, then an insert on a miss (as the cache
    itself does), with brute-force search over what was inserted. A hit is correct only inside its
    own cluster."""
    items = [(q, ci) for ci, cluster in enumerate(clusters) for q in cluster]
    if seed is not None:
        random.Random(seed).shuffle(items)
    mat = np.zeros((len(items), next(iter(vecs.values())).shape[0]), dtype=np.float32)
    texts: list[str] = []
    owners: list[int] = []
    hits = correct = 0
    for q, ci in items:
        v = vecs[q]
        n = len(texts)
        hit = False
        if n:
            sims = mat[:n] @ v
            for j in np.argsort(-sims)[:top_k]:
                if decide(q, texts[j], float(sims[j])):
                    hits += 1
                    correct += owners[j] == ci
                    hit = True
                    break
        if not hit:
            mat[n] = v
            texts.append(q)
            owners.append(ci)
    return {
        "lookups": len(items),
        "hits": hits,
        "hit_rate": hits / len(items),
        "hit_precision": correct / hits if hits else 1.0,
    }


REPLAY_SEEDS = (0, 1, 2, 3, 4)


def _replay_seeds(clusters, vecs, decide, top_k: int) -> dict:
    runs = [replay(clusters, vecs, decide, top_k, seed) for seed in REPLAY_SEEDS]
    return {
        "seed0": runs[0],
        "mean_hit_precision": float(np.mean([r["hit_precision"] for r in runs])),
        "min_hit_precision": float(np.min([r["hit_precision"] for r in runs])),
        "mean_hit_rate": float(np.mean([r["hit_rate"] for r in runs])),
        "in_order": replay(clusters, vecs, decide, top_k, None),
    }


def evaluate_replay(
    clusters: list[list[str]], vecs: dict[str, np.ndarray], scored: Scored, presets: dict[str, Scored]
) -> dict:
    """Shuffled replays (seeds 0-4, the mean is what a figure quotes) and the file's own order."""
    out: dict = {"questions": sum(map(len, clusters)), "clusters": len(clusters), "seeds": list(REPLAY_SEEDS)}
    out["cosine_0.90"] = _replay_seeds(clusters, vecs, lambda q, c, s: s >= 0.90, 1)
    out[f"cosine_{COSINE_THRESHOLD}"] = _replay_seeds(
        clusters, vecs, lambda q, c, s: s >= COSINE_THRESHOLD, 1
    )
    for name, sc in presets.items():
        out[f"policy_{name}"] = _replay_seeds(clusters, vecs, sc.decide(), sc.policy.top_k)
    out["cosine_sweep"] = {
        str(t): replay(clusters, vecs, lambda q, c, s, t=t: s >= t, 1, REPLAY_SEED) for t in THRESHOLDS[::5]
    }
    out["policy_sweep"] = {
        str(t): replay(clusters, vecs, scored.decide(t), scored.policy.top_k, REPLAY_SEED)
        for t in scored.grid[::5]
    }
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = results["pair_sets"]
    ncols = len(sets) + (1 if "replay" in results else 0)
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 4.5), squeeze=False)
    for ax, (name, res) in zip(axes[0], sets.items(), strict=False):
        for key, style in (("cosine", "--"), ("policy", "-")):
            c = res[key]["curve"]
            ax.plot(
                c["recall"], c["precision"], style, label=f"{key} (AP {res[key]['average_precision']:.3f})"
            )
            ax.plot(
                c["recall"],
                [1 - f for f in c["false_hit_rate"]],
                style,
                alpha=0.4,
                label=f"{key}: 1 - false-hit rate",
            )
        d = res["policy"]["at_default"]
        ax.plot([d["recall"]], [d["precision"]], "ko", label="policy default")
        ax.set(title=name, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=7, loc="lower left")
    if "replay" in results:
        ax = axes[0][-1]
        rep = results["replay"]
        for key, style in (("cosine_sweep", "--o"), ("policy_sweep", "-o")):
            pts = list(rep[key].values())
            ax.plot([p["hit_rate"] for p in pts], [p["hit_precision"] for p in pts], style, ms=3, label=key)
        d = rep[f"policy_{DEFAULT_PRESET}"]["seed0"]
        ax.plot([d["hit_rate"]], [d["hit_precision"]], "ko", label="policy default")
        ax.set(title="OSSChat replay (seed 0)", xlabel="hit rate", ylabel="hit precision", ylim=(0.6, 1.005))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=Path, action="append", help="JSONL {a, b, label}; repeatable")
    ap.add_argument("--negatives", type=Path, action="append", help="JSONL near-misses (label 0); repeatable")
    ap.add_argument("--whole", type=Path, action="append", help="JSONL {a, b, label} evaluated whole; repeatable")
    ap.add_argument("--clusters", type=Path, default=None, help="JSON list of lists of questions")
    ap.add_argument("--no-clusters", action="store_true", help="skip the replay")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--cache-dir", type=Path, default=Path("tmp/.cache/embeddings"))
    ap.add_argument(
        "--encoder",
        default=None,
        help="cache.encoder back end (auto, onnx, torch, ...) or 'hashing' for a smoke run",
    )
    args = ap.parse_args(argv)
    pairs = args.pairs or DEFAULT_PAIRS
    negatives = args.negatives if args.negatives is not None else DEFAULT_NEGATIVES
    clusters_path = None if args.no_clusters else (args.clusters or DEFAULT_CLUSTERS)
    whole = args.whole or []
    for p in [*pairs, *negatives, *whole, *([clusters_path] if clusters_path else [])]:
        if not p.exists():
            print(f"cache_quality: input file not found: {p}", file=sys.stderr)
            return 2
    sets = load_pairs(pairs, negatives, whole)
    clusters = json.loads(clusters_path.read_text()) if clusters_path else None
    texts = [t for s in sets for t in (*s.a, *s.b)] + [q for c in clusters or [] for q in c]
    vecs = EmbeddingCache(args.cache_dir, named_encoder(args.encoder)).embed(texts)
    presets = _scored_presets()
    scored = presets[DEFAULT_PRESET]
    results: dict = {"config": msgspec.to_builtins(scored.policy.config)}
    results["presets"] = {name: msgspec.to_builtins(cfg) for name, cfg in PRESETS.items()}
    results["pair_sets"] = {s.name: evaluate_pairs(s, vecs, scored, presets) for s in sets}
    if clusters:
        results["replay"] = evaluate_replay(clusters, vecs, scored, presets)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "quality.png")
    print(summary(results))
    return 0


def _scored_presets() -> dict[str, Scored]:
    """One Scored per preset; presets that differ only in their threshold share one memo (a verdict at
    threshold -1 does not depend on it), so the verifier scores each pair once for all of them."""
    memos: dict[bytes, dict] = {}
    out: dict[str, Scored] = {}
    for name, cfg in PRESETS.items():
        sc = Scored(HitPolicy(cfg))
        key = msgspec.json.encode(msgspec.structs.replace(cfg, threshold=None))
        sc._memo = memos.setdefault(key, sc._memo)
        out[name] = sc
    return out


def summary(results: dict) -> str:
    lines = [f"default config: {results['config']}"]
    for name, r in results["pair_sets"].items():
        c, p = r["cosine"], r["policy"]
        lines.append(
            f"{name}: {r['pairs']} pairs ({r['positives']} pos) | AP cosine {c['average_precision']:.3f} "
            f"policy {p['average_precision']:.3f} | best recall @ false-hit rate <= 2%: cosine "
            f"{c['best_recall_at_fhr_2pct']['recall']:.3f} policy {p['best_recall_at_fhr_2pct']['recall']:.3f}, "
            f"<= 1%: policy {p['best_recall_at_fhr_1pct']['recall']:.3f} "
            f"| verify {r['verify_us_per_pair']:.1f} us/pair (cold analyses)"
        )
        for preset, d in p["presets"].items():
            cd = d["cosine_at_same_threshold"]
            lines.append(
                f"   {preset:8s} t={d['threshold']:.3g}: AP {d['average_precision']:.3f} best R@FHR<=1% "
                f"{d['best_recall_at_fhr_1pct']['recall']:.3f} | P {d['precision']:.3f} R {d['recall']:.3f} "
                f"FHR {d['false_hit_rate']:.3f} | cosine alone P {cd['precision']:.3f} R {cd['recall']:.3f} "
                f"FHR {cd['false_hit_rate']:.3f}"
            )
    if "replay" in results:
        rep = results["replay"]
        for key, x in rep.items():
            if isinstance(x, dict) and "seed0" in x:
                lines.append(
                    f"replay {key}: hit precision mean {x['mean_hit_precision']:.3f} (min {x['min_hit_precision']:.3f}, "
                    f"seed0 {x['seed0']['hit_precision']:.3f}, in-order {x['in_order']['hit_precision']:.3f}) | "
                    f"hit rate mean {x['mean_hit_rate']:.3f}"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
