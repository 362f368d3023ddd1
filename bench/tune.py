"""``thrifty tune``: find the cache setting with the most hits under an error bound, from labelled data.

    thrifty tune --pairs qqp_pairs.jsonl --split 0.5 --max-error 0.02 [--plot tune.png] [--write thrifty.yaml]
    thrifty tune --clusters osschat_clusters.json --orders 5
    thrifty tune --ledger            # the shadow and feedback labels of the configured ledger

Inputs: labelled pairs (JSONL ``{a, b, label}``, label 1 = may share an answer), intent clusters (a JSON list of
lists of questions, OSSChat's format: every question is paired with its nearest earlier question, as a cache
replaying them in a random order would see it; correct only inside its cluster), or the ledger's labels (each
label's hit score, from the requests it rated).

For every guard setting (hit-policy preset) and threshold it computes precision (correct hits / hits), recall
(correct hits / pairs that should hit), hit rate (hits / pairs) and false-hit rate (wrong hits / pairs that
must miss), each with a bootstrap 95 % interval (Poisson weights), per group when ``--by`` names one (a pair
field such as ``domain``, or ``namespace`` for the ledger). The recommended setting maximises the hit rate among
those whose false-hit rate's *upper* 95 % bound is at most ``--max-error`` (``--criterion point``: the estimate
itself). ``--split f`` keeps a deterministic part of the pairs (a hash of the pair) out of tuning and reports the
recommendation's figures on it. ``--deltas`` also replays the pairs as a stream through the adaptive gate
(bench.adaptive_replay) at each error bound. ``--write`` sets ``cache.policy`` and ``cache.threshold``
in a YAML config file, keeping every other line (comments included), and says what changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GRID = [round(float(t), 3) for t in np.arange(0.60, 0.996, 0.005)]
PROB_GRID = [round(float(t), 3) for t in np.arange(0.05, 0.996, 0.01)]


@dataclass
class Labelled:
    """Labelled (query, candidate) pairs; ``score`` given for ledger labels (no text to re-judge)."""

    name: str
    a: list[str] = field(default_factory=list)
    b: list[str] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    score: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.label)

    def take(self, idx: np.ndarray, name: str) -> Labelled:
        pick = idx.tolist()
        return Labelled(name, [self.a[i] for i in pick] if self.a else [], [self.b[i] for i in pick] if self.b else [],
                        [self.label[i] for i in pick], [self.group[i] for i in pick],
                        [self.score[i] for i in pick] if self.score else [])


# ---------------------------------------------------------------------------------------------- inputs
def load_pairs(path: Path, by: str | None) -> Labelled:
    out = Labelled(path.stem)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.a.append(str(row["a"]))
            out.b.append(str(row["b"]))
            out.label.append(int(row["label"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise SystemExit(f"{path}:{n}: expected a JSON object with a, b and label (0 or 1): {exc}") from None
        out.group.append(str(row.get(by, "")) if by else "")
    return out


def load_clusters(path: Path, orders: int, encode: Any) -> Labelled:
    """Each question paired with its nearest earlier question, over ``orders`` seeded orders."""
    clusters = json.loads(path.read_text(encoding="utf-8"))
    questions = [(q, c) for c, members in enumerate(clusters) for q in members]
    texts = [q for q, _ in questions]
    vecs = encode(texts)
    out = Labelled(path.stem)
    for seed in range(orders):
        order = np.random.default_rng(seed).permutation(len(questions))
        for pos in range(1, len(order)):
            i = order[pos]
            earlier = order[:pos]
            sims = vecs[earlier] @ vecs[i]
            j = earlier[int(np.argmax(sims))]
            out.a.append(texts[i])
            out.b.append(texts[j])
            out.label.append(int(questions[i][1] == questions[j][1]))
            out.group.append(f"order{seed}")
    return out


def load_ledger(path: Path, by: str | None) -> Labelled:
    """The labels of cached answers (shadow, judge, feedback) with the hit score of the request they rate."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT l.good, COALESCE(r.hit_score, l.similarity) AS s, l.namespace, l.tenant FROM labels l "
            "LEFT JOIN requests r ON r.request_id = l.request_id "
            "WHERE l.entry_id IS NOT NULL AND l.source != 'nearmiss' AND COALESCE(r.hit_score, l.similarity) "
            "IS NOT NULL").fetchall()
    finally:
        conn.close()
    out = Labelled(f"ledger {path}")
    for good, s, ns, tenant in rows:
        out.label.append(int(good))
        out.score.append(float(s))
        out.group.append(str(ns if by == "namespace" else tenant if by == "tenant" else ""))
    return out


def split(data: Labelled, fraction: float) -> tuple[Labelled, Labelled]:
    """(tuning, test): a pair is in the test part when a hash of its texts says so (deterministic)."""
    keys = [f"{a}\x00{b}" for a, b in zip(data.a, data.b, strict=True)] if data.a else [
        str(i) for i in range(len(data))]
    test = np.array([hashlib.sha256(k.encode()).digest()[0] / 256 < fraction for k in keys])
    return data.take(np.flatnonzero(~test), data.name + ":tune"), data.take(np.flatnonzero(test), data.name + ":test")


# ---------------------------------------------------------------------------------------------- scoring
@dataclass
class Setting:
    policy: str  # a hit-policy preset, or "as-served" for ledger labels
    threshold: float


def acceptance(data: Labelled, policy: str, encode: Any) -> tuple[list[float], np.ndarray]:
    """(grid, accepted[n, len(grid)]): which pairs ``policy`` accepts at every threshold of the grid."""
    if not data.a:  # ledger labels: the hit score decides
        s = np.asarray(data.score)
        return GRID, s[:, None] >= np.asarray(GRID)[None, :]
    from cache.policy import PRESETS, HitPolicy

    hp = HitPolicy(PRESETS[policy])
    learned = hp.config.learned
    grid = PROB_GRID if learned else GRID
    vecs = encode(sorted(set(data.a) | set(data.b)))
    index = {t: i for i, t in enumerate(sorted(set(data.a) | set(data.b)))}
    cos = np.einsum("ij,ij->i", vecs[[index[t] for t in data.a]], vecs[[index[t] for t in data.b]]).astype(float)
    verdicts = hp.verify_pairs(list(zip(data.a, data.b, cos.tolist(), strict=True)), threshold=-1.0)
    ident = np.array([v.reason == "identical" for v in verdicts])
    ok = np.array([v.accept for v in verdicts])
    score = np.array([v.score for v in verdicts])
    g = np.asarray(grid)[None, :]
    gate = hp.first_bar if learned else np.minimum(hp.first_bar, g)
    acc = ident[:, None] | (ok[:, None] & (cos[:, None] >= gate) & (score[:, None] >= g))
    return grid, acc


def metrics(acc: np.ndarray, label: np.ndarray, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """precision, recall, hit rate, false-hit rate per column of ``acc``; with ``weights`` (B, n): per resample."""
    pos = (label == 1).astype(np.float32)
    neg = 1.0 - pos
    a = acc.astype(np.float32)
    if weights is None:
        weights = np.ones((1, len(label)), dtype=np.float32)
    tp = weights @ (a * pos[:, None])
    fp = weights @ (a * neg[:, None])
    npos = (weights @ pos)[:, None]
    nneg = (weights @ neg)[:, None]
    n = weights.sum(axis=1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "precision": np.where(tp + fp > 0, tp / (tp + fp), 1.0),
            "recall": tp / np.maximum(npos, 1e-9),
            "hit_rate": (tp + fp) / np.maximum(n, 1e-9),
            "false_hit_rate": fp / np.maximum(nneg, 1e-9),
        }


def sweep(acc: np.ndarray, label: np.ndarray, bootstrap: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Point estimates and bootstrap 2.5 / 97.5 percentiles per threshold (``<metric>``, ``_lo``, ``_hi``)."""
    point = metrics(acc, label)
    out = {k: v[0] for k, v in point.items()}
    if bootstrap:
        rng = np.random.default_rng(seed)
        chunks = []
        for start in range(0, bootstrap, 100):  # bounded memory: 100 resamples at a time
            w = rng.poisson(1.0, size=(min(100, bootstrap - start), len(label))).astype(np.float32)
            chunks.append(metrics(acc, label, w))
        for k in point:
            allb = np.concatenate([c[k] for c in chunks])
            out[k + "_lo"] = np.percentile(allb, 2.5, axis=0)
            out[k + "_hi"] = np.percentile(allb, 97.5, axis=0)
    return out


def recommend(results: dict[str, tuple[list[float], dict[str, np.ndarray]]], max_error: float,
              criterion: str) -> tuple[Setting, int] | None:
    """The (policy, threshold) with the highest hit rate whose false-hit rate (upper bound) is within the bound."""
    best: tuple[float, float, Setting, int] | None = None
    for policy, (grid, m) in results.items():
        bound = m.get("false_hit_rate_hi", m["false_hit_rate"]) if criterion == "upper" else m["false_hit_rate"]
        for i, t in enumerate(grid):
            if bound[i] <= max_error:
                key = (float(m["hit_rate"][i]), float(m["precision"][i]))
                if best is None or key > best[:2]:
                    best = (*key, Setting(policy, t), i)
    return None if best is None else (best[2], best[3])


def _fmt(m: dict[str, np.ndarray], i: int, name: str) -> str:
    v = float(m[name][i])
    if name + "_lo" in m:
        return f"{v:.4f} [{float(m[name + '_lo'][i]):.4f}, {float(m[name + '_hi'][i]):.4f}]"
    return f"{v:.4f}"


def point_at(data: Labelled, setting: Setting, encode: Any, bootstrap: int) -> dict[str, Any]:
    grid, acc = acceptance(data, setting.policy, encode)
    i = int(np.argmin(np.abs(np.asarray(grid) - setting.threshold)))
    m = sweep(acc[:, i : i + 1], np.asarray(data.label), bootstrap, seed=1)
    return {k: float(v[0]) for k, v in m.items()} | {"pairs": len(data)}


# ---------------------------------------------------------------------------------------------- config
def write_config(path: Path, values: dict[str, Any]) -> list[str]:
    """Set ``cache.<key>: value`` lines in a YAML file, keeping every other line; what changed, as lines.
    ``values`` keys are dotted below ``cache`` (``threshold``, ``policy``, ``adaptive.delta``)."""
    import yaml

    from engine.config import load

    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.splitlines()
    changes = []
    for dotted, value in values.items():
        keys = ["cache", *dotted.split(".")]
        rendered = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        lines, old = _set_key(lines, keys, rendered)
        changes.append(f"cache.{dotted}: {old if old is not None else '(unset)'} -> {rendered}")
    new = "\n".join(lines) + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    try:
        load(tmp)  # the file must still be a valid config
    except Exception:
        tmp.unlink()
        raise
    tmp.replace(path)
    return changes


def _set_key(lines: list[str], keys: list[str], rendered: str) -> tuple[list[str], str | None]:
    """Find (or make) the block of ``keys`` (block-style YAML) and set its last key's value."""
    start, indent = 0, -1
    end = len(lines)
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        pattern = re.compile(rf"^(\s*){re.escape(key)}\s*:(.*)$")
        found = None
        child_indent = None
        for i in range(start, end):
            line = lines[i]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            ind = len(line) - len(line.lstrip())
            if ind <= indent:
                end = i
                break
            if child_indent is None:
                child_indent = ind
            if ind != child_indent:
                continue
            m = pattern.match(line)
            if m:
                found = i
                break
        pad = " " * (child_indent if child_indent is not None else indent + 2 if indent >= 0 else 0)
        if found is None:
            insert = [pad + f"{k}:" for k in keys[depth:-1]]
            deeper = [" " * (len(pad) + 2 * j) + s.strip() for j, s in enumerate(insert)]
            leaf = " " * (len(pad) + 2 * len(insert)) + f"{keys[-1]}: {rendered}"
            at = end if start > 0 or indent >= 0 else len(lines)
            return lines[:at] + deeper + [leaf] + lines[at:], None
        if last:
            m = pattern.match(lines[found])
            assert m is not None
            rest = m.group(2)
            comment = ""
            if " #" in rest:
                rest, comment = rest.split(" #", 1)
                comment = "  #" + comment
            old = rest.strip() or None
            lines = [*lines[:found], f"{m.group(1)}{keys[-1]}: {rendered}{comment}", *lines[found + 1:]]
            return lines, old
        indent = len(lines[found]) - len(lines[found].lstrip())
        start = found + 1
        # the block ends at the next line indented at or above this key
        end = next((i for i in range(start, len(lines)) if lines[i].strip() and not lines[i].lstrip().startswith("#")
                    and len(lines[i]) - len(lines[i].lstrip()) <= indent), len(lines))
    return lines, None


# ---------------------------------------------------------------------------------------------- plot
def plot(path: Path, results: dict[str, tuple[list[float], dict[str, np.ndarray]]], max_error: float,
         chosen: tuple[Setting, int] | None, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for policy, (grid, m) in results.items():
        ax1.plot(m["false_hit_rate"], m["hit_rate"], label=policy)
        if "false_hit_rate_lo" in m:
            ax1.fill_betweenx(m["hit_rate"], m["false_hit_rate_lo"], m["false_hit_rate_hi"], alpha=0.2)
        ax2.plot(grid, m["precision"], label=f"{policy} precision")
        ax2.plot(grid, m["recall"], linestyle="--", label=f"{policy} recall")
    ax1.axvline(max_error, color="red", linestyle=":", label=f"max error {max_error:g}")
    if chosen is not None:
        setting, i = chosen
        m = results[setting.policy][1]
        ax1.scatter([m["false_hit_rate"][i]], [m["hit_rate"][i]], color="black", zorder=5,
                    label=f"recommended: {setting.policy} @ {setting.threshold:g}")
    ax1.set_xlabel("false-hit rate")
    ax1.set_ylabel("hit rate")
    ax1.set_xlim(0, min(1.0, max(4 * max_error, 0.1)))
    ax1.legend(fontsize=8)
    ax2.set_xlabel("threshold")
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main
def _encoder() -> Any:
    from bench._embed_cache import EmbeddingCache

    cache = EmbeddingCache()

    def encode(texts: list[str]) -> np.ndarray:
        found = cache.embed(texts)
        return np.stack([found[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    return encode


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thrifty tune", description=__doc__.split("\n\n")[0])
    src = p.add_argument_group("labelled data (one at least)")
    src.add_argument("--pairs", type=Path, action="append", default=[], help="JSONL {a, b, label}")
    src.add_argument("--clusters", type=Path, help="JSON list of lists of questions (OSSChat format)")
    src.add_argument("--orders", type=int, default=3, help="clusters: seeded replay orders")
    src.add_argument("--ledger", nargs="?", const="", default=None,
                     help="a ledger file's labels (no value: the configured ledger)")
    p.add_argument("--config", help="thrifty config (for --ledger and as the default --write target)")
    p.add_argument("--max-error", type=float, default=0.02, help="false-hit rate bound (default 0.02)")
    p.add_argument("--criterion", choices=["upper", "point"], default="upper",
                   help="the bound applies to the upper end of the 95%% interval (default) or the estimate")
    p.add_argument("--policies", default="cosine,verified",
                   help="guard settings swept: hit-policy presets (cache.policy.PRESETS)")
    p.add_argument("--deltas", default="", help="adaptive error bounds to replay, e.g. 0.01,0.02,0.05")
    p.add_argument("--split", type=float, default=0.0, help="fraction held out as a test part")
    p.add_argument("--by", help="report per group: a pair field (domain) or namespace / tenant (ledger)")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples (0: none)")
    p.add_argument("--plot", type=Path, help="write the curves to this PNG")
    p.add_argument("--json", type=Path, help="write every figure to this JSON file")
    p.add_argument("--write", nargs="?", const="", default=None, type=str,
                   help="update this YAML config (no value: --config) with the recommendation")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    if not (args.pairs or args.clusters or args.ledger is not None):
        console.print("thrifty tune: give --pairs, --clusters or --ledger")
        return 2
    if not 0.0 < args.max_error < 1.0:
        console.print(f"thrifty tune: --max-error must be in (0, 1), got {args.max_error}")
        return 2
    encode = _encoder() if (args.pairs or args.clusters) else None
    datasets: list[Labelled] = [load_pairs(p, args.by) for p in args.pairs]
    if args.clusters:
        datasets.append(load_clusters(args.clusters, args.orders, encode))
    if args.ledger is not None:
        path = Path(args.ledger) if args.ledger else _ledger_path(args.config)
        datasets.append(load_ledger(path, args.by))
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    report: dict[str, Any] = {"max_error": args.max_error, "criterion": args.criterion, "datasets": []}
    recommendation: dict[str, Any] | None = None
    for data in datasets:
        tune, test = split(data, args.split) if args.split else (data, None)
        groups = sorted(set(tune.group)) if args.by else [""]
        for group in groups:
            part = tune if not group else tune.take(np.flatnonzero(np.asarray(tune.group) == group), tune.name)
            if not len(part):
                continue
            label = np.asarray(part.label)
            results: dict[str, tuple[list[float], dict[str, np.ndarray]]] = {}
            with Progress(console=console, transient=True) as bar:
                pols = policies if part.a else ["as-served"]
                task = bar.add_task(f"{part.name} {group}".strip(), total=len(pols))
                for policy in pols:
                    grid, acc = acceptance(part, policy, encode)
                    results[policy] = (grid, sweep(acc, label, args.bootstrap))
                    bar.advance(task)
            chosen = recommend(results, args.max_error, args.criterion)
            entry = _report(console, Table, part, group, results, chosen, args)
            if chosen is not None and test is not None and not group:
                tpart = test
                entry["test"] = point_at(tpart, chosen[0], encode, args.bootstrap)
                t = entry["test"]
                console.print(f"  on the held-out test part ({t['pairs']} pairs): false-hit rate "
                              f"{t['false_hit_rate']:.4f} [{t['false_hit_rate_lo']:.4f}, {t['false_hit_rate_hi']:.4f}]"
                              f", hit rate {t['hit_rate']:.4f}, precision {t['precision']:.4f}, "
                              f"recall {t['recall']:.4f}" if "false_hit_rate_lo" in t else f"  test: {t}")
            if args.deltas and part.a:
                entry["adaptive"] = _adaptive(console, part, args, encode)
            report["datasets"].append(entry)
            if args.plot and recommendation is None:
                plot(args.plot, results, args.max_error, chosen, f"{part.name} {group}".strip())
                console.print(f"  curves written to {args.plot}")
            if recommendation is None and chosen is not None:
                recommendation = {"policy": chosen[0].policy, "threshold": chosen[0].threshold}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=_jsonable))
    if args.write is not None:
        target = Path(args.write or args.config or "")
        if not str(target):
            console.print("thrifty tune --write: name the config file (or give --config)")
            return 2
        if recommendation is None or recommendation["policy"] == "as-served":
            values = {"threshold": recommendation["threshold"]} if recommendation else {}
        else:
            values = dict(recommendation)
        if not values:
            console.print("nothing to write: no setting meets the bound")
            return 1
        for change in write_config(target, values):
            console.print(f"{target}: {change}")
    return 0


def _adaptive(console: Any, part: Labelled, args: argparse.Namespace, encode: Any) -> list[dict[str, Any]]:
    from bench.adaptive_replay import pair_stream, replay

    out = []
    for delta in [float(d) for d in args.deltas.split(",") if d.strip()]:
        stream = pair_stream(part, encode, seed=0)
        res = replay(stream, delta=delta, feedback=1.0, seed=0)
        out.append({"delta": delta, **res})
        console.print(f"  adaptive delta={delta:g}: hit rate {res['hit_rate']:.4f} "
                      f"[{res['hit_rate_ci'][0]:.4f}, {res['hit_rate_ci'][1]:.4f}], false-hit rate "
                      f"{res['false_hit_rate']:.4f} [{res['false_hit_rate_ci'][0]:.4f}, {res['false_hit_rate_ci'][1]:.4f}]")
    return out


def _report(console: Any, table_cls: Any, part: Labelled, group: str,
            results: dict[str, tuple[list[float], dict[str, np.ndarray]]], chosen: tuple[Setting, int] | None,
            args: argparse.Namespace) -> dict[str, Any]:
    label = np.asarray(part.label)
    title = f"{part.name}{' / ' + group if group else ''}: {len(part)} pairs, {int(label.sum())} should hit"
    table = table_cls(title=title)
    for col in ("policy", "threshold", "precision", "recall", "hit rate", "false-hit rate (95% CI)"):
        table.add_column(col)
    for policy, (grid, m) in results.items():
        cap = max(4 * args.max_error, 0.05)
        rows = [i for i in range(len(grid)) if abs(grid[i] * 100 - round(grid[i] * 100)) < 1e-6
                and float(m["false_hit_rate"][i]) <= cap]
        rows = rows[:: max(1, len(rows) // 12)]
        if chosen is not None and chosen[0].policy == policy and chosen[1] not in rows:
            rows = sorted([*rows, chosen[1]])
        for i in rows:
            mark = " *" if chosen is not None and chosen[0].policy == policy and chosen[1] == i else ""
            table.add_row(policy + mark, f"{grid[i]:g}", _fmt(m, i, "precision"), _fmt(m, i, "recall"),
                          _fmt(m, i, "hit_rate"), _fmt(m, i, "false_hit_rate"))
    console.print(table)
    entry: dict[str, Any] = {"name": part.name, "group": group, "pairs": len(part),
                             "curves": {p: {"threshold": g, **{k: v.tolist() for k, v in m.items()}}
                                        for p, (g, m) in results.items()}}
    if chosen is None:
        console.print(f"  no setting keeps the false-hit rate within {args.max_error:g} ({args.criterion} bound)")
        return entry
    setting, i = chosen
    m = results[setting.policy][1]
    entry["recommended"] = {"policy": setting.policy, "threshold": setting.threshold,
                            **{k: float(v[i]) for k, v in m.items()}}
    console.print(f"  recommended for --max-error {args.max_error:g}: policy {setting.policy}, threshold "
                  f"{setting.threshold:g} -> hit rate {_fmt(m, i, 'hit_rate')}, false-hit rate "
                  f"{_fmt(m, i, 'false_hit_rate')}, precision {_fmt(m, i, 'precision')}")
    return entry


def _ledger_path(config: str | None) -> Path:
    from engine.config import load

    return load(config).data_dir / "ledger.sqlite3"


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x).__name__)


if __name__ == "__main__":
    sys.exit(main())
