"""``thrifty bench proxy``: added latency and throughput of the proxy, as its clients see it.

Starts the fake upstream and ``thrifty serve`` (pointed at it), then, alternating A B A B between the
proxy and the fake upstream called directly: sequential latency (cache off), a concurrency sweep
(1 … 64 clients) with throughput and p50/p99, streaming time to first byte; then the cache-hit paths
through the proxy (exact and semantic hits, prompts <= 64 tokens). Added latency = through thrifty
minus direct, per percentile.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen as lg
from bench import workload
from bench._procs import BENCH_MODEL, Server, fake_upstream, thrifty_config, thrifty_serve
from bench.report import Report, cmdline, progress

PATH = "/v1/chat/completions"
OFF = {"x-thrifty-cache-mode": "off"}


@dataclass(frozen=True)
class Plan:
    seq: int = 2000
    levels: tuple[int, ...] = lg.CONCURRENCY_LEVELS
    per_level: int = 6000
    level_s: float = 4.0
    stream: int = 300
    hits: int = 1000

    @classmethod
    def short(cls) -> Plan:
        return cls(seq=300, levels=(1, 8, 32), per_level=1000, level_s=1.5, stream=60, hits=200)


def parse_args(argv: Sequence[str], prog: str, default_out: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=Path(default_out), help="results folder")
    p.add_argument("--short", action="store_true", help="a quick run (CI)")
    p.add_argument("--seq", type=int, help="sequential requests per target")
    p.add_argument("--levels", help="comma-separated client counts, e.g. 1,8,32")
    p.add_argument("--per-level", type=int, help="requests per level (also bounded by --level-seconds)")
    p.add_argument("--level-seconds", type=float)
    p.add_argument("--hits", type=int, help="cache-hit requests per path")
    p.add_argument("--work", type=Path, help="working folder (logs, data dir); default: a temp dir")
    p.add_argument("--dashboard", choices=("browser", "poll"),
                   help="with the dashboard open, refreshing every second: headless chromium on /ui, or its "
                        "Overview calls alone (bench._dashboard)")
    p.add_argument("--tracing", action="store_true",
                   help="serve with tracing: {enabled: true} (exporter and sampler from the OTEL_* variables)")
    return p.parse_args(list(argv))


def plan_from(args: argparse.Namespace) -> Plan:
    base = Plan.short() if args.short else Plan()
    return Plan(
        seq=args.seq or base.seq,
        levels=tuple(int(x) for x in args.levels.split(",")) if args.levels else base.levels,
        per_level=args.per_level or base.per_level,
        level_s=args.level_seconds or base.level_s,
        stream=base.stream,
        hits=getattr(args, "hits", None) or base.hits,
    )


def _calls(ep: lg.Endpoint, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    return ep.request(PATH, body, headers)


def measure_added(thrifty: lg.Endpoint, direct: lg.Endpoint, plan: Plan, report: Report) -> dict[str, Any]:
    """Sequential A/B (cache off), the sweep, and streaming TTFB; fills tables, returns the figures."""
    body = workload.chat_bytes(workload.prompt(40, 1), model=BENCH_MODEL)
    via, direct_raw = _calls(thrifty, body, OFF), _calls(direct, body)
    sa, sb = lg.run(lg.alternate(thrifty, via, direct, direct_raw, plan.seq, warmup=50,
                                 keep_headers=("x-thrifty-cache", "x-thrifty-overhead-ms")))
    _check(sa, "thrifty (sequential)")
    A, B = lg.summarize(sa), lg.summarize(sb)
    add = lg.added(A, B)
    report.table("sequential latency, cache off (ms)", ["target", "n", "p50", "p95", "p99", "mean"],
                 [[n, s.n, s.p50_ms, s.p95_ms, s.p99_ms, s.mean_ms] for n, s in (("thrifty", A), ("direct", B))]
                 + [["added", None, add["p50_ms"], add["p95_ms"], add["p99_ms"], add["mean_ms"]]],
                 note="A B A B alternation; added = through thrifty minus direct")
    server_overhead = [float(v) for v in sa.header_values.get("x-thrifty-overhead-ms", [])]

    with progress("concurrency sweep", len(plan.levels)) as advance:
        sweep = lg.run(lg.sweep([(thrifty, via), (direct, direct_raw)], plan.levels, requests=plan.per_level,
                                duration_s=plan.level_s, on_level=lambda _lvl: advance(1)))
    rows = []
    for lvl in plan.levels:
        t, d = sweep[thrifty.name][lvl], sweep[direct.name][lvl]
        rows.append([lvl, t.throughput_rps, d.throughput_rps, t.p50_ms, t.p99_ms, d.p50_ms, d.p99_ms, t.errors])
    report.table("concurrency sweep, cache off", ["clients", "thrifty req/s", "direct req/s", "thrifty p50 ms",
                                                  "thrifty p99 ms", "direct p50 ms", "direct p99 ms", "errors"],
                 rows)
    _plot_sweep(report, sweep, thrifty.name, direct.name, plan.levels)

    sbody = workload.chat_bytes(workload.prompt(40, 2), model=BENCH_MODEL, stream=True)
    ta, tb = lg.run(lg.alternate(thrifty, _calls(thrifty, sbody, OFF), direct, _calls(direct, sbody), plan.stream))
    _check(ta, "thrifty (stream)")
    TA, TB = lg.summarize(ta, ttfb=True), lg.summarize(tb, ttfb=True)
    report.table("streaming time to first byte, cache off (ms)", ["target", "n", "p50", "p99"],
                 [["thrifty", TA.n, TA.p50_ms, TA.p99_ms], ["direct", TB.n, TB.p50_ms, TB.p99_ms],
                  ["added", None, TA.p50_ms - TB.p50_ms, TA.p99_ms - TB.p99_ms]])
    return {"sequential": {"thrifty": A, "direct": B, "added": add,
                           "outcomes": dict(Counter(sa.header_values.get("x-thrifty-cache", []))),
                           "server_overhead_ms": _pcts(server_overhead)},
            "sweep": {name: {str(k): v for k, v in by.items()} for name, by in sweep.items()},
            "stream_ttfb": {"thrifty": TA, "direct": TB,
                            "added": {"p50_ms": TA.p50_ms - TB.p50_ms, "p99_ms": TA.p99_ms - TB.p99_ms}}}


def measure_hits(thrifty: lg.Endpoint, n: int, report: Report) -> dict[str, Any]:
    """Exact hits (the same request again) and semantic hits (a paraphrase) through the proxy."""
    pairs = workload.semantic_pairs()
    stored = [workload.chat_bytes(a, model=BENCH_MODEL) for a, _ in pairs]
    para = [workload.chat_bytes(b, model=BENCH_MODEL) for _, b in pairs]
    prime = lg.run(lg.sequential(thrifty, lambda i: _calls(thrifty, stored[i % len(stored)]), len(stored), warmup=0))
    _check(prime, "priming the cache")
    out: dict[str, Any] = {}
    rows = []
    for kind, bodies in (("exact", stored), ("semantic", para)):
        s = lg.run(lg.sequential(thrifty, _rotate(thrifty, bodies), n, warmup=len(bodies),
                                 keep_headers=("x-thrifty-cache", "x-thrifty-overhead-ms")))
        _check(s, f"{kind} hits")
        summ = lg.summarize(s)
        outcomes = dict(Counter(s.header_values.get("x-thrifty-cache", [])))
        out[kind] = {"latency": summ, "outcomes": outcomes,
                     "server_overhead_ms": _pcts([float(v) for v in s.header_values.get("x-thrifty-overhead-ms", [])])}
        rows.append([kind, summ.n, summ.p50_ms, summ.p95_ms, summ.p99_ms, ", ".join(f"{k}={v}" for k, v in outcomes.items())])
    report.table("cache hits through the proxy, prompts <= 64 tokens (ms, as the client sees it)",
                 ["path", "n", "p50", "p95", "p99", "x-thrifty-cache"], rows)
    return out


def _rotate(ep: lg.Endpoint, bodies: list[bytes]) -> Callable[[int], bytes]:
    raws = [_calls(ep, b) for b in bodies]
    return lambda i: raws[i % len(raws)]


def _pcts(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p95, p99 = lg.percentiles_ms([v * 1e6 for v in values])
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99}


def _check(s: lg.Samples, what: str) -> None:
    if s.ok == 0:
        raise RuntimeError(f"{what}: no successful request ({s.errors} errors; last: {s.last_error})")


def _plot_sweep(report: Report, sweep: dict[str, dict[int, lg.Summary]], a: str, b: str,
                levels: Sequence[int]) -> None:
    def axes(ax: Any, ylabel: str, title: str) -> None:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(levels), [str(x) for x in levels])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()

    def throughput(ax: Any) -> None:
        for name in (a, b):
            ax.plot(levels, [sweep[name][lvl].throughput_rps for lvl in levels], marker="o", label=name)
        axes(ax, "requests / s (log)", "throughput, cache off")

    def latency(ax: Any) -> None:
        for name in (a, b):
            ax.plot(levels, [sweep[name][lvl].p50_ms for lvl in levels], marker="o", label=f"{name} p50")
            ax.plot(levels, [sweep[name][lvl].p99_ms for lvl in levels], marker="x", ls="--", label=f"{name} p99")
        axes(ax, "latency, ms (log)", "latency under load, cache off")

    report.plot("sweep_throughput", throughput)
    report.plot("sweep_latency", latency)


def run_suite(plan: Plan, work: Path, report: Report, *, tracing: bool = False,
              dashboard: str | None = None) -> dict[str, Any]:
    with fake_upstream(work) as up:
        config = thrifty_config(up.port, work / "data")
        if tracing:
            config["tracing"] = {"enabled": True}
        if dashboard is None:
            with thrifty_serve(config, work) as proxy:
                return run_against(proxy, up, plan, report)
        from bench._dashboard import ADMIN_KEY, dashboard_open

        with thrifty_serve(config, work, env={"THRIFTY_ADMIN_KEY": ADMIN_KEY}) as proxy, \
                dashboard_open(proxy.port, dashboard) as polled:
            data = run_against(proxy, up, plan, report)
        report.data["dashboard"] = polled
        return data


def run_against(proxy: Server, up: Server, plan: Plan, report: Report) -> dict[str, Any]:
    thrifty = lg.Endpoint(proxy.port, name="thrifty")
    direct = lg.Endpoint(up.port, name="direct")
    data = {"plan": plan.__dict__, **measure_added(thrifty, direct, plan, report),
            "hits": measure_hits(thrifty, plan.hits, report)}
    report.data.update(data)
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv or [], "thrifty bench proxy", "results/proxy")
    plan = plan_from(args)
    report = Report("proxy", args.out, command=cmdline("proxy", argv))
    report.note("Preliminary unless stated: figures measured on a shared 2-core machine.")
    with tempfile.TemporaryDirectory(prefix="thrifty-bench-") as tmp:
        work = args.work or Path(tmp)
        if args.tracing:
            report.note("Tracing on: spans exported over OTLP as the OTEL_* variables say.")
        if args.dashboard:
            report.note(f"Dashboard open ({args.dashboard}), refreshing every second, during the whole run.")
        run_suite(plan, work, report, tracing=args.tracing, dashboard=args.dashboard)
    report.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
