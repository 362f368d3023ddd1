"""``thrifty bench overhead``: in-process cost of each pipeline stage at p50/p95/p99.

An ``engine.Engine`` (in this process) calls the fake upstream (another process). Each response's
``meta.stages`` gives milliseconds per stage (scope, exact lookup, encode, search with the guards, route,
dispatch, store); the upstream's own time is taken out of ``dispatch``; the suffix (metrics + ledger
row, after the response is ready) is timed by wrapping the pipeline's ``finish``. Paths: miss (unique
prompts), exact hit (the same request again), semantic hit (a paraphrase), each for short, medium and
long prompts.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import workload
from bench._procs import BENCH_MODEL, fake_upstream, thrifty_config
from bench.loadgen import run as run_loop
from bench.report import Report, cmdline, progress

PATHS = ("miss", "exact", "semantic")
STAGE_ORDER = ("scope", "exact", "encode", "search", "route", "dispatch_overhead", "store", "finish",
               "overhead")


@dataclass
class PathRun:
    """Per-request figures for one path and size."""

    path: str
    size: str
    wall_ms: list[float] = field(default_factory=list)  # engine.complete() as the caller sees it
    added_ms: list[float] = field(default_factory=list)  # wall minus the upstream's time
    stages: dict[str, list[float]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, wall_ms: float, meta: Any, finish_ms: float) -> None:
        self.wall_ms.append(wall_ms)
        upstream = max(0.0, meta.latency_ms - meta.overhead_ms)
        self.added_ms.append(wall_ms - upstream)
        self.outcomes[meta.cache] += 1
        stages = dict(meta.stages)
        if "dispatch" in stages:
            stages["dispatch_overhead"] = max(0.0, stages.pop("dispatch") - upstream)
        stages["finish"] = finish_ms
        stages["overhead"] = meta.overhead_ms
        for k, v in stages.items():
            self.stages.setdefault(k, []).append(v)


def engine_class() -> Any:
    """``engine.Engine`` (the public name), or its module while the package does not export it yet."""
    try:
        from engine import Engine
    except ImportError:
        from engine.engine import Engine
    return Engine


def pcts(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3  # type: ignore[return-value]
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=np.float64), (50, 95, 99))
    return float(p50), float(p95), float(p99)


class FinishTimer:
    """Times the pipeline's suffix (metrics + ledger) by wrapping ``Pipeline.finish`` on one engine."""

    def __init__(self, engine: Any) -> None:
        self.last_ms = 0.0
        pipeline = engine.pipeline
        original = pipeline.finish

        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter_ns()
            try:
                return original(*a, **kw)
            finally:
                self.last_ms = (time.perf_counter_ns() - t) / 1e6

        pipeline.finish = timed


@contextmanager
def gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def bodies_for(path: str, size: str, salt: str) -> Callable[[int], dict[str, Any]]:
    """Request i for a path: misses are unique, exact hits repeat stored prompts, semantic hits paraphrase."""
    tokens = workload.SIZES[size]
    if path == "miss":
        return lambda i: workload.chat(workload.prompt(tokens, i, unique=f"{salt}-{i}"), model=BENCH_MODEL)
    pairs = stored_pairs(size)
    pick = 0 if path == "exact" else 1
    return lambda i: workload.chat(pairs[i % len(pairs)][pick], model=BENCH_MODEL)


def stored_pairs(size: str) -> list[tuple[str, str]]:
    return workload.sized_pairs(size)


async def prime(engine: Any, size: str) -> None:
    for a, _ in stored_pairs(size):
        await engine.complete(workload.chat(a, model=BENCH_MODEL))


async def drive(engine: Any, timer: FinishTimer, run: PathRun, make: Callable[[int], dict[str, Any]], n: int,
                warmup: int = 5) -> None:
    for i in range(warmup):
        await engine.complete(make(10**6 + i))
    with gc_paused():
        for i in range(n):
            t = time.perf_counter_ns()
            done = await engine.complete(make(i))
            wall = (time.perf_counter_ns() - t) / 1e6
            run.add(wall, done.meta, timer.last_ms)


def _no_progress(n: int = 1) -> None:
    return None


async def measure(config: dict[str, Any], sizes: tuple[str, ...], n: int, *,
                  advance: Callable[[int], None] = _no_progress) -> list[PathRun]:
    engine = engine_class().from_config(config)
    await engine.start()
    timer = FinishTimer(engine)
    runs: list[PathRun] = []
    try:
        for size in sizes:
            salt = f"{size}-{time.time_ns()}"
            await prime(engine, size)
            for path in PATHS:
                r = PathRun(path, size)
                await drive(engine, timer, r, bodies_for(path, size, salt), n)
                runs.append(r)
                advance(1)
    finally:
        await engine.aclose()
    return runs


def tabulate(report: Report, runs: list[PathRun]) -> None:
    for r in runs:
        rows: list[list[Any]] = []
        for stage in (*STAGE_ORDER, *sorted(set(r.stages) - set(STAGE_ORDER))):
            if stage in r.stages:
                rows.append([stage, *pcts(r.stages[stage])])
        rows.append(["added (wall − upstream)", *pcts(r.added_ms)])
        outcome = ", ".join(f"{k}={v}" for k, v in r.outcomes.items())
        report.table(f"{r.path} path, {r.size} prompt (ms per stage)", ["stage", "p50", "p95", "p99"], rows,
                     note=f"n={len(r.wall_ms)}; outcomes: {outcome}")
    report.data["runs"] = [{"path": r.path, "size": r.size, "n": len(r.wall_ms), "outcomes": dict(r.outcomes),
                            "added_ms": dict(zip(("p50", "p95", "p99"), pcts(r.added_ms), strict=True)),
                            "stages": {k: dict(zip(("p50", "p95", "p99"), pcts(v), strict=True))
                                       for k, v in r.stages.items()}} for r in runs]


def _plot(report: Report, runs: list[PathRun]) -> None:
    def draw(ax: Any) -> None:
        labels = [f"{r.path}\n{r.size}" for r in runs]
        p50 = [pcts(r.added_ms)[0] for r in runs]
        p99 = [pcts(r.added_ms)[2] for r in runs]
        x = np.arange(len(runs))
        ax.bar(x - 0.2, p50, 0.4, label="p50")
        ax.bar(x + 0.2, p99, 0.4, label="p99")
        ax.axhline(50, color="red", ls="--", label="budget (p99 50 ms)")
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel("added latency, ms (log)")
        ax.set_yscale("log")
        ax.set_title("in-process added latency by path and prompt size")
        ax.legend()

    report.plot("overhead", draw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="thrifty bench overhead", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=Path("results/overhead"))
    p.add_argument("-n", type=int, default=500, help="requests per path and size")
    p.add_argument("--sizes", default="short,medium,long")
    p.add_argument("--short", action="store_true", help="a quick run: n=60, short and medium prompts")
    args = p.parse_args(argv or [])
    n = 60 if args.short else args.n
    sizes = ("short", "medium") if args.short and args.sizes == p.get_default("sizes") else tuple(args.sizes.split(","))
    report = Report("overhead", args.out, command=cmdline("overhead", argv))
    report.note("Preliminary unless stated: figures measured on a shared 2-core machine.")
    with tempfile.TemporaryDirectory(prefix="thrifty-overhead-") as tmp, fake_upstream(Path(tmp)) as up:
        config = thrifty_config(up.port, Path(tmp) / "data")
        with progress("overhead", len(sizes) * len(PATHS)) as advance:
            runs = run_loop(measure(config, sizes, n, advance=advance))
    tabulate(report, runs)
    _plot(report, runs)
    report.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))

