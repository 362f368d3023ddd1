"""An experiment's report from the ledger: each metric per arm with an interval, each arm against control
(difference, relative difference, always-valid interval, decided or not), the traffic split against the
weights, guard-rail events, and a PNG of the metrics over time.

Metrics (per request of the arm):

* ``cost_usd`` — what the request cost (a cache hit costs 0);
* ``tokens`` — prompt + completion tokens of upstream answers (a hit counts 0);
* ``added_ms`` — latency thrifty added (everything but the upstream wait);
* ``upstream_ms`` — the upstream wait, over answered misses (status < 400, not served from cache);
* ``error_rate`` — share of 5xx answers;
* ``hit_rate`` — share served from the cache (exact or semantic);
* ``feedback`` — mean feedback score over requests that got one (``labels`` rows of source ``feedback``,
  joined on the request id: ``score``, else ``good`` as 0/1);
* ``judge`` — for a non-control arm with a judge, the mean probability that its answer is at least as good
  as control's (0.5: parity), over the judged sample (engine/_experiment_judge.py).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from engine import _experiment_stats as st

METRICS: tuple[tuple[str, str], ...] = (
    ("cost_usd", "mean"), ("tokens", "mean"), ("added_ms", "mean"), ("upstream_ms", "mean"),
    ("error_rate", "rate"), ("hit_rate", "rate"), ("feedback", "mean"), ("judge", "mean"),
)


def _rows(ledger: Any, name: str, since: float | None) -> list[dict[str, Any]]:
    has_labels = bool(ledger.query("SELECT 1 AS x FROM sqlite_master WHERE type='table' AND name='labels'"))
    # Ratings of the answer itself (POST /v1/feedback) and the judge's comparisons with control, not the
    # shadow checks of would-be cache hits.
    def of(source: str) -> str:
        return (f"(SELECT AVG(COALESCE(l.score, l.good)) FROM labels l WHERE l.request_id = r.request_id "
                f"AND l.source = '{source}')" if has_labels else "NULL")

    where = "r.experiment = ?" + (" AND r.ts >= ?" if since is not None else "")
    params: tuple[Any, ...] = (name, since) if since is not None else (name,)
    return ledger.query(
        "SELECT r.arm AS arm, r.ts AS ts, r.cost_usd AS cost_usd, r.prompt_tokens + r.completion_tokens AS tokens, "
        "r.latency_ms AS latency_ms, r.overhead_ms AS overhead_ms, r.status AS status, r.cache AS cache, "
        f"{of('feedback')} AS feedback, {of('judge')} AS judge FROM requests r WHERE {where} ORDER BY r.ts", params)


def _series(rows: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metric -> (values, times) for one arm."""
    ts = np.array([r["ts"] for r in rows], dtype=np.float64)
    status = np.array([r["status"] for r in rows], dtype=np.int64)
    hit = np.array([r["cache"] in ("exact", "hit") for r in rows], dtype=bool)
    lat = np.array([r["latency_ms"] for r in rows], dtype=np.float64)
    ovh = np.array([r["overhead_ms"] for r in rows], dtype=np.float64)
    answered = (status < 400) & ~hit
    fb = np.array([r["feedback"] if r["feedback"] is not None else math.nan for r in rows], dtype=np.float64)
    has_fb = ~np.isnan(fb)
    jd = np.array([r["judge"] if r["judge"] is not None else math.nan for r in rows], dtype=np.float64)
    has_jd = ~np.isnan(jd)
    return {
        "cost_usd": (np.array([r["cost_usd"] for r in rows], dtype=np.float64), ts),
        "tokens": (np.array([r["tokens"] for r in rows], dtype=np.float64), ts),
        "added_ms": (ovh, ts),
        "upstream_ms": ((lat - ovh)[answered], ts[answered]),
        "error_rate": ((status >= 500).astype(np.float64), ts),
        "hit_rate": (hit.astype(np.float64), ts),
        "feedback": (fb[has_fb], ts[has_fb]),
        "judge": (jd[has_jd], ts[has_jd]),
    }


def build(ledger: Any, name: str, *, control: str, arms: list[str], shares: dict[str, float], alpha: float = 0.05,
          since: float | None = None, state: Any = None) -> dict[str, Any]:
    rows = _rows(ledger, name, since)
    by_arm: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    for r in rows:
        by_arm.setdefault(r["arm"], []).append(r)
    series = {a: _series(rs) for a, rs in by_arm.items()}
    n_total = len(rows)
    counts = [len(by_arm[a]) for a in by_arm]
    expected = [shares.get(a, 0.0) for a in by_arm]
    split = st.split_check(counts, expected) if sum(expected) > 0 else [(math.nan, 0.0, True)] * len(counts)
    out_arms: dict[str, Any] = {}
    for (arm, rs), (_, exp_share, ok) in zip(by_arm.items(), split, strict=True):
        metrics: dict[str, Any] = {}
        for metric, kind in METRICS:
            values = series[arm][metric][0]
            metrics[metric] = (st.wilson(int(values.sum()), int(values.size)) if kind == "rate" else st.mean_ci(values))
        out_arms[arm] = {"requests": len(rs), "share": st.wilson(len(rs), n_total), "expected_share": exp_share,
                         "split_ok": ok, "metrics": metrics}
    vs: dict[str, Any] = {}
    if control in series:
        for arm in by_arm:
            if arm == control:
                continue
            vs[arm] = {}
            for metric, _ in METRICS:
                (a, ta), (b, tb) = series[control][metric], series[arm][metric]
                if a.size >= 2 and b.size >= 2:
                    vs[arm][metric] = st.compare(a, b, alpha=alpha, order_a=ta, order_b=tb)
    return {"experiment": name, "control": control, "alpha": alpha, "requests": n_total,
            "since": since, "first_ts": rows[0]["ts"] if rows else None, "last_ts": rows[-1]["ts"] if rows else None,
            "arms": out_arms, "vs_control": vs,
            "state": msgspec.to_builtins(state) if state is not None else None}


def as_builtins(report: dict[str, Any]) -> Any:
    """JSON-ready (NaN and infinities become null)."""
    def clean(x: Any) -> Any:
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return clean(msgspec.to_builtins(report))


def _fmt(x: float | None, metric: str) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    if metric in ("error_rate", "hit_rate"):
        return f"{x:.2%}"
    if metric == "cost_usd":
        return f"{x:.3g}"
    return f"{x:.4g}"


def render(report: dict[str, Any]) -> str:
    """The report as text (tables drawn with rich, exported to a string)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150, record=True, file=io.StringIO())
    r = report
    console.print(f"experiment {r['experiment']}: {r['requests']} requests, control {r['control']}, "
                  f"sequential test at alpha={r['alpha']}")
    state = r.get("state") or {}
    if state:
        console.print(f"status {state.get('status', 'running')}"
                      + (f", winner {state['winner']}" if state.get("winner") else "")
                      + "".join(f"; arm {a} stopped: {why}" for a, why in (state.get("stopped_arms") or {}).items()))
    split = Table(title="traffic split")
    for col in ("arm", "requests", "share [95% CI]", "weight", "within noise"):
        split.add_column(col, justify="left" if col == "arm" else "right")
    for arm, a in r["arms"].items():
        sh = a["share"]
        share = f"{_fmt(sh.value, 'hit_rate')} [{_fmt(sh.ci.lo, 'hit_rate')}, {_fmt(sh.ci.hi, 'hit_rate')}]"
        split.add_row(arm, str(a["requests"]), share,
                      f"{a['expected_share']:.2%}", "yes" if a["split_ok"] else "NO (sample ratio mismatch)")
    console.print(split)
    t = Table(title="metrics per arm (95% CI) and against control")
    for col in ("metric", "arm", "n", "value [95% CI]", "diff vs control [95% CI]", "relative [95% CI]",
                "always-valid CI", "decided"):
        t.add_column(col, justify="left" if col in ("metric", "arm") else "right")
    for metric, _ in METRICS:
        for arm, a in r["arms"].items():
            e = a["metrics"][metric]
            row = [metric, arm, str(e.n), f"{_fmt(e.value, metric)} [{_fmt(e.ci.lo, metric)}, {_fmt(e.ci.hi, metric)}]"]
            d = r["vs_control"].get(arm, {}).get(metric)
            if d is None:
                row += ["(control)" if arm == r["control"] else "-", "", "", ""]
            else:
                rel = (f"{d.rel:+.1%} [{d.rel_ci.lo:+.1%}, {d.rel_ci.hi:+.1%}]"
                       if d.rel is not None and d.rel_ci is not None else "-")
                row += [f"{_fmt(d.diff, metric)} [{_fmt(d.ci.lo, metric)}, {_fmt(d.ci.hi, metric)}]", rel,
                        f"[{_fmt(d.cs.lo, metric)}, {_fmt(d.cs.hi, metric)}]",
                        f"yes (p={d.p_always_valid:.2g})" if d.decided else "not yet"]
            t.add_row(*row)
    console.print(t)
    events = (state or {}).get("events") or []
    for ev in events:
        console.print(f"guard rail: arm {ev['arm']} stopped at {ev['ts']:.0f}: {ev['reason']}")
    return console.export_text()


def plot(ledger: Any, name: str, arms: list[str], out: Path, *, since: float | None = None, buckets: int = 30) -> Path:
    """A PNG of requests, cost per request, upstream latency (p50) and error rate per arm over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(ledger, name, since)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    if rows:
        t0, t1 = rows[0]["ts"], rows[-1]["ts"]
        edges = np.linspace(t0, max(t1, t0 + 1e-3), buckets + 1)
        mids = (edges[:-1] + edges[1:]) / 2 - t0
        present = list(dict.fromkeys([*arms, *(r["arm"] for r in rows)]))
        for arm in present:
            s = _series([r for r in rows if r["arm"] == arm])
            for ax, metric, how in ((axes[0][0], "cost_usd", "count"), (axes[0][1], "cost_usd", "mean"),
                                    (axes[1][0], "upstream_ms", "median"), (axes[1][1], "error_rate", "mean")):
                values, ts = s[metric]
                idx = np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, buckets - 1)
                ys = []
                for i in range(buckets):
                    v = values[idx == i]
                    ys.append(v.size if how == "count" else (float(np.median(v)) if how == "median" else float(v.mean()))
                              if v.size else math.nan)
                ax.plot(mids, ys, marker=".", label=arm)
    titles = (("requests per bucket", "cost per request (USD)"), ("upstream latency p50 (ms)", "error rate"))
    for i in range(2):
        for j in range(2):
            axes[i][j].set_title(titles[i][j])
            axes[i][j].grid(alpha=0.3)
    axes[1][0].set_xlabel("seconds since the first request")
    axes[1][1].set_xlabel("seconds since the first request")
    if rows:
        axes[0][0].legend()
    fig.suptitle(f"experiment {name}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
