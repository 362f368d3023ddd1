"""Router evaluation: train a quality predictor on one part of routing data, route the other part.

    python -m bench.router_eval                       # both shared suites, results in results/router/
    python -m bench.router_eval --train A.jsonl B.jsonl --test C.jsonl [--out DIR]

A file named in both --train and --test (or --test omitted) is split deterministically by the hash of
each prompt (50/50). Files must share one set of models. For every test prompt the router picks one
model from the predicted P(correct) and the estimated cost (per group and model, a linear fit of the
answer's cost on the prompt's estimated tokens, learned on the train part; a group is a training file,
and a test prompt's group is its nearest train-group centroid, so no test label is used), two ways,
each swept over its knob:

* ``λ``      — maximise ``P - λ·cost`` (willingness to pay);
* ``target`` — the cheapest model whose P ≥ target (the ``target`` policy of ``router.scoring``).

Every curve is scored with the test rows' real outcomes and real costs (RouterBench) or list price ×
token estimate (RouteLLM; see bench/router_data.py). Reported: each single model, a random mix of the
strongest and the cheapest model, the k-NN baseline, the logistic predictor and the group-logistic
predictor (logistic + a per-(group, model) intercept). The k-NN's k and the group-logistic's L2 are
chosen by the same repeated 5-fold routing cross-validation on the train part only
(bench/router_cv.py), and the family that wins it is the shipped router (``--cv-seeds 0`` skips the CV:
L2 by log loss, k = 40, group-logistic shipped); the cost share to reach
95 % / 100 % of the best single model's quality, raw (operating points actually reached) and on the
non-decreasing convex hull (RouterBench's convention: any point between two routers is reachable by
mixing them at random); APGR; and, for two-model data, the share of calls to the strong model at 95 %.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from itertools import pairwise
from pathlib import Path

import numpy as np

from bench.router_cv import best, cross_validate, fit_group, fit_knn, to_rows
from bench.router_data import RoutingSet, embed, load_files, query_text, split_by_hash
from models.tokens import estimate_tokens
from router.predictor import GroupLogisticPredictor, KNNPredictor, LogisticPredictor

ROUTING = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routing"
SUITES = {
    "routerbench": [f"routerbench_{n}.jsonl" for n in ("arc_challenge", "mbpp", "winograde")],
    "routellm": ["routellm_mmlu.jsonl", "routellm_gsm8k.jsonl"],
}
LAMBDAS = np.concatenate([[0.0], np.geomspace(0.1, 1e6, 400)])
TARGETS = np.linspace(0.0, 1.0, 401)


# ---------------------------------------------------------------------------------------------- data
def _prepare(train_files: Sequence[str], test_files: Sequence[str]) -> tuple[RoutingSet, RoutingSet]:
    test_files = list(test_files) or list(train_files)
    both = [f for f in train_files if f in test_files]
    parts_tr, parts_te = [], []
    if both:
        tr, te = split_by_hash(load_files(both))
        parts_tr.append(tr)
        parts_te.append(te)
    only_tr = [f for f in train_files if f not in both]
    only_te = [f for f in test_files if f not in both]
    if only_tr:
        parts_tr.append(load_files(only_tr))
    if only_te:
        parts_te.append(load_files(only_te))
    return _concat(parts_tr, "train"), _concat(parts_te, "test")


def _concat(parts: list[RoutingSet], name: str) -> RoutingSet:
    models = parts[0].models
    for p in parts[1:]:
        if p.models != models:
            raise SystemExit(f"files disagree on models: {models} vs {p.models}")
    return RoutingSet(name, [q for p in parts for q in p.prompts], np.concatenate([p.groups for p in parts]), models,
                      np.concatenate([p.correct for p in parts]), np.concatenate([p.cost for p in parts]),
                      parts[0].cost_source)


def cost_estimate(train: RoutingSet, tok_tr: np.ndarray, pred: GroupLogisticPredictor, x: np.ndarray,
                  tok: np.ndarray) -> np.ndarray:
    """(n, m) expected USD per answer for prompts ``x``: the cost model of the group each prompt falls in."""
    gi_tr = np.searchsorted(np.array(pred.groups), train.groups)
    coef = _cost_model(train, tok_tr, gi_tr, len(pred.groups))
    gi = pred.group_index(x)
    return np.maximum(coef[gi, 0] + tok[:, None] * coef[gi, 1], 1e-12)


def _cost_model(train: RoutingSet, tokens_tr: np.ndarray, group_tr: np.ndarray, n_groups: int) -> np.ndarray:
    """(groups, 2, m): intercept and slope of cost ~ tokens per group and model (least squares, train part)."""
    coef = np.zeros((n_groups, 2, train.cost.shape[1]))
    for g in range(n_groups):
        sel = group_tr == g
        if not sel.any():
            sel = np.ones(len(group_tr), dtype=bool)
        a = np.stack([np.ones(int(sel.sum())), tokens_tr[sel]], 1)
        coef[g], *_ = np.linalg.lstsq(a, train.cost[sel], rcond=None)
    return coef


# ---------------------------------------------------------------------------------------------- curves
def _sweep(p: np.ndarray, cost_hat: np.ndarray, y: np.ndarray, cost: np.ndarray, kind: str) -> list[tuple[float, float]]:
    rows = np.arange(len(p))
    points = []
    if kind == "lambda":
        for lam in LAMBDAS:
            choice = np.argmax(p - lam * cost_hat, axis=1)
            points.append((float(cost[rows, choice].sum()), float(y[rows, choice].mean())))
    else:
        order = np.argsort(cost_hat, axis=1)
        for t in TARGETS:
            ok = np.take_along_axis(p, order, 1) >= t
            first = np.where(ok.any(1), ok.argmax(1), -1)
            best = np.argmax(p, axis=1)
            choice = np.where(first >= 0, order[rows, np.maximum(first, 0)], best)
            points.append((float(cost[rows, choice].sum()), float(y[rows, choice].mean())))
    return points


def _hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Upper, non-decreasing convex hull of (cost, quality) points."""
    hull: list[tuple[float, float]] = []
    for c, q in sorted(set(points)):
        if hull and q <= hull[-1][1]:
            continue
        while len(hull) >= 2 and (hull[-1][1] - hull[-2][1]) * (c - hull[-2][0]) <= (q - hull[-2][1]) * (hull[-1][0] - hull[-2][0]):
            hull.pop()
        hull.append((c, q))
    return hull


def _cost_to_reach(points: list[tuple[float, float]], target: float, hull: bool) -> float | None:
    if not hull:
        costs = [c for c, q in points if q >= target - 1e-12]
        return min(costs) if costs else None
    h = _hull(points)
    for (c0, q0), (c1, q1) in pairwise(h):
        if q0 >= target:
            return c0
        if q1 >= target:
            return c0 + (target - q0) / (q1 - q0) * (c1 - c0)
    return h[-1][0] if h and h[-1][1] >= target else None


def _apgr(points: list[tuple[float, float]], c_weak: float, q_weak: float, c_strong: float, q_strong: float) -> float:
    """Average performance gap recovered over the cost range [weak, strong] (best quality at ≤ cost)."""
    grid = np.linspace(c_weak, c_strong, 201)
    pts = sorted(points)
    best = np.array([max([q for c, q in pts if c <= g + 1e-12], default=q_weak) for g in grid])
    pgr = (np.maximum(best, q_weak) - q_weak) / (q_strong - q_weak)
    return float(np.trapezoid(np.minimum(pgr, 1.5), grid) / (c_strong - c_weak))


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate(train: RoutingSet, test: RoutingSet, name: str, seed: int = 0, cv_seeds: int = 10) -> dict:
    x_tr = embed([query_text(p) for p in train.prompts])
    x_te = embed([query_text(p) for p in test.prompts])
    tok_tr = np.array([estimate_tokens(p) for p in train.prompts], dtype=float)
    tok_te = np.array([estimate_tokens(p) for p in test.prompts], dtype=float)
    cv_scores = cross_validate(train, x_tr, tok_tr, seeds=cv_seeds) if cv_seeds else []
    if cv_scores:
        group_pred = fit_group(x_tr, train, best(cv_scores, "group_logistic").param)
        knn_k = int(best(cv_scores, "knn").param)
        shipped_family = best(cv_scores).family
    else:  # no routing CV asked for: L2 by 3-fold log loss, the predictor's own default search
        group_pred = GroupLogisticPredictor.fit(*to_rows(x_tr, train), groups=np.repeat(train.groups, len(train.models)).tolist(),
                                                 l2=(1.0, 3.0, 10.0), folds=3)
        knn_k, shipped_family = 40, "group_logistic"
    shipped = f"{shipped_family}/lambda"  # the router the checks below are made against
    gi_te = group_pred.group_index(x_te)
    cost_hat = cost_estimate(train, tok_tr, group_pred, x_te, tok_te)
    y, cost = test.correct, test.cost
    single = {m: (float(cost[:, j].sum()), float(y[:, j].mean())) for j, m in enumerate(test.models)}
    best_model = max(single, key=lambda m: single[m][1])
    cheap_model = min(single, key=lambda m: single[m][0])
    c_best, q_best = single[best_model]
    c_cheap, q_cheap = single[cheap_model]
    rng = np.random.default_rng(seed)
    jb, jc = test.models.index(best_model), test.models.index(cheap_model)
    rows = np.arange(len(y))
    random_mix = []
    for share in np.linspace(0, 1, 21):
        pick = np.where(rng.random(len(y)) < share, jb, jc)
        random_mix.append((float(cost[rows, pick].sum()), float(y[rows, pick].mean())))
    logistic = LogisticPredictor.fit(*to_rows(x_tr, train))
    predictors: dict[str, KNNPredictor | LogisticPredictor | GroupLogisticPredictor] = {
        "knn": fit_knn(x_tr, train, knn_k), "logistic": logistic, "group_logistic": group_pred}
    curves: dict[str, list[tuple[float, float]]] = {}
    for pname, pred in predictors.items():
        cols = [pred.models.index(m) for m in test.models]
        p = pred.predict(x_te)[:, cols]
        for kind in ("lambda", "target"):
            curves[f"{pname}/{kind}"] = _sweep(p, cost_hat, y, cost, kind)
    curves["random_mix"] = random_mix
    summary = {}
    for cname, pts in curves.items():
        row: dict[str, float | None] = {"max_quality": max(q for _, q in pts)}
        for share in (0.95, 1.0):
            for hull in (False, True):
                c = _cost_to_reach(pts, share * q_best, hull)
                row[f"cost_share_at_{int(share * 100)}{'_hull' if hull else ''}"] = None if c is None else c / c_best
        row["apgr"] = _apgr(pts, c_cheap, q_cheap, c_best, q_best)
        summary[cname] = row
    result = {
        "suite": name, "train_rows": len(train.prompts), "test_rows": len(test.prompts), "models": test.models,
        "cost_source": test.cost_source, "best_single": best_model, "cheapest_single": cheap_model,
        "best_single_quality": q_best, "best_single_cost": c_best,
        "single_models": {m: {"cost": c, "cost_share": c / c_best, "quality": q} for m, (c, q) in single.items()},
        "routers": summary, "shipped": shipped, "l2": logistic.l2, "group_l2": group_pred.l2, "knn_k": knn_k,
        "cv": [asdict(c) | {"criterion": c.criterion} for c in cv_scores],
        "cv_folds": 5, "cv_seeds": cv_seeds,
        "group_accuracy_test": float((np.array(group_pred.groups)[gi_te] == test.groups).mean())
        if set(test.groups) <= set(group_pred.groups) else None,
        "curves": {k: [[c, q] for c, q in v] for k, v in curves.items()},
    }
    ship = predictors[shipped_family]
    shipped_p = ship.predict(x_te)[:, [ship.models.index(m) for m in test.models]]
    result["bootstrap_shipped"] = _bootstrap(shipped_p, cost_hat, y, cost, seed)
    if len(test.models) == 2:
        result["strong_call_share_at_95"] = _strong_share(shipped_p, cost_hat, y, jb, 0.95 * q_best)
    below = [m for m, (c, q) in single.items() if not _on_or_above(curves[shipped], c, q)]
    result["single_models_above_router_curve"] = below
    result["random_mix_points_above_router_curve"] = sum(not _on_or_above(curves[shipped], c, q) for c, q in random_mix)
    return result


def _bootstrap(p: np.ndarray, cost_hat: np.ndarray, y: np.ndarray, cost: np.ndarray, seed: int,
               draws: int = 200) -> dict[str, list[float | None]]:
    """5th/50th/95th percentiles of the cost share at 95 % (raw, hull) over resamples of the test rows:
    how far the one test figure could move with another sample of prompts of the same kind."""
    rng = np.random.default_rng(seed)
    vals = np.full((draws, 2), np.nan)
    for b in range(draws):
        i = rng.integers(0, len(y), len(y))
        jb = int(np.argmax(y[i].mean(0)))
        c_best, q = float(cost[i, jb].sum()), 0.95 * float(y[i, jb].mean())
        pts = _sweep(p[i], cost_hat[i], y[i], cost[i], "lambda")
        for k, hull in enumerate((False, True)):
            c = _cost_to_reach(pts, q, hull)
            vals[b, k] = np.nan if c is None else c / c_best
    out: dict[str, list[float | None]] = {}
    for k, key in enumerate(("cost_share_at_95", "cost_share_at_95_hull")):
        col = vals[:, k]
        out[key] = [float(v) for v in np.nanquantile(col, [0.05, 0.5, 0.95])] if np.isfinite(col).any() else [None] * 3
    return out


def _on_or_above(points: list[tuple[float, float]], c: float, q: float, tol: float = 1e-9) -> bool:
    """Whether the router reaches quality ≥ q at cost ≤ c (a point no router operating point dominates fails)."""
    return any(pc <= c * (1 + 1e-6) and pq >= q - tol for pc, pq in points)


def _strong_share(p: np.ndarray, cost_hat: np.ndarray, y: np.ndarray, jb: int, target: float) -> float | None:
    rows = np.arange(len(y))
    shares = []
    for lam in LAMBDAS:
        choice = np.argmax(p - lam * cost_hat, axis=1)
        if y[rows, choice].mean() >= target:
            shares.append(float((choice == jb).mean()))
    return min(shares) if shares else None


# ---------------------------------------------------------------------------------------------- output
def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c_best = result["best_single_cost"]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    styles = {"group_logistic/lambda": ("C3", "-"), "group_logistic/target": ("C3", ":"), "logistic/lambda": ("C0", "-"), "logistic/target": ("C0", ":"), "knn/lambda": ("C1", "-"),
              "knn/target": ("C1", ":"), "random_mix": ("grey", "--")}
    for cname, (color, ls) in styles.items():
        pts = sorted(result["curves"][cname])
        h = _hull([tuple(p) for p in pts])
        label = f"{cname} (hull)" + (", shipped" if cname == result["shipped"] else "")
        label += f", k={result['knn_k']}" if cname.startswith("knn/") else ""
        ax.plot([c / c_best for c, _ in h], [q for _, q in h], color=color, ls=ls, label=label, lw=1.6)
        ax.scatter([c / c_best for c, _ in pts], [q for _, q in pts], color=color, s=3, alpha=0.35)
    for m, s in result["single_models"].items():
        ax.scatter(s["cost_share"], s["quality"], marker="x", color="k", s=25)
        ax.annotate(m.split("/")[-1][:22], (s["cost_share"], s["quality"]), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.axhline(0.95 * result["best_single_quality"], color="red", lw=0.7, ls="--", label="95% of best single")
    ax.axhline(result["best_single_quality"], color="red", lw=0.7, label="best single model")
    ax.set_xscale("log")
    ax.set_xlabel(f"cost / cost of {result['best_single']}")
    ax.set_ylabel("quality (accuracy)")
    ax.set_title(f"{result['suite']}: test part ({result['test_rows']} prompts)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _print(result: dict) -> None:
    print(f"\n== {result['suite']}  train {result['train_rows']} / test {result['test_rows']} prompts; "
          f"costs: {result['cost_source']}; logistic l2={result['l2']}; group-logistic l2={result['group_l2']}; "
          f"k-NN k={result['knn_k']}; shipped {result['shipped']} "
          f"(group from vector, test accuracy {result['group_accuracy_test']})")
    if result["cv"]:
        print(f"  routing CV on the train part ({result['cv_folds']}-fold x {result['cv_seeds']} fold assignments; "
              "cost share at 95 % of the best single model, mean; the lowest mean of raw and hull is shipped):")
        for c in result["cv"]:
            print(f"    {c['name']:24s} @95% {c['cost_share_at_95']:.3f} (sd {c['spread_95']:.3f}, never {c['never']})"
                  f"  @95%h {c['cost_share_at_95_hull']:.3f}  APGR {c['apgr']:.3f}  log loss {c['log_loss']:.4f}")
    print(f"best single: {result['best_single']} quality {result['best_single_quality']:.4f} cost ${result['best_single_cost']:.4f}")
    for m, s in sorted(result["single_models"].items(), key=lambda kv: kv[1]["cost"]):
        print(f"  single {m:42s} cost share {s['cost_share']:7.3f}  quality {s['quality']:.4f}")
    fmt = lambda v: "  never" if v is None else f"{v:7.3f}"  # noqa: E731
    print(f"  {'router':18s} {'@95%':>7s} {'@95%h':>7s} {'@100%':>7s} {'@100%h':>7s} {'APGR':>6s} {'maxQ':>6s}")
    for cname, row in result["routers"].items():
        print(f"  {cname:18s} {fmt(row['cost_share_at_95'])} {fmt(row['cost_share_at_95_hull'])} "
              f"{fmt(row['cost_share_at_100'])} {fmt(row['cost_share_at_100_hull'])} {row['apgr']:6.3f} {row['max_quality']:.4f}")
    if "strong_call_share_at_95" in result:
        print(f"  share of {result['best_single']} calls at 95% of its quality ({result['shipped']}): {result['strong_call_share_at_95']}")
    bs = result["bootstrap_shipped"]
    print(f"  {result['shipped']} @95% over 200 resamples of the test rows (5th/50th/95th pct): "
          + "; ".join(f"{k.replace('cost_share_at_', '@')}: " + "/".join("n/a" if v is None else f"{v:.3f}" for v in vals)
                      for k, vals in bs.items()))
    print(f"  single models above the {result['shipped']} curve: {result['single_models_above_router_curve'] or 'none'}; "
          f"random-mix points above it: {result['random_mix_points_above_router_curve']}")


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs="+", help="routing files to train on (default: both shared suites)")
    ap.add_argument("--test", nargs="*", default=[], help="routing files to test on (default: the train files, split)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results" / "router"))
    ap.add_argument("--name", default="custom")
    ap.add_argument("--cv-seeds", type=int, default=10,
                    help="fold assignments of the 5-fold routing CV that picks L2, k and the shipped family (0: no CV)")
    args = ap.parse_args(argv)
    jobs = ([(args.name, args.train, args.test)] if args.train else
            [(name, [str(ROUTING / f) for f in files], []) for name, files in SUITES.items()])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name, train_files, test_files in jobs:
        train, test = _prepare(train_files, test_files)
        result = evaluate(train, test, name, cv_seeds=args.cv_seeds)
        _print(result)
        (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        _plot(result, out / f"{name}.png")
        print(f"  wrote {out / (name + '.json')} and {out / (name + '.png')}")
        results.append(result)
    return results


if __name__ == "__main__":
    main()
