"""``thrifty bench scale``: one cache grown 1k → 10k → 100k → 1M entries (one partition: the worst case).

At each level: bulk insert rate and the public ``insert()`` rate, lookup latency without the encoder
(near-duplicate queries that hit, random queries that miss, and the exact-key lookup) at p50/p99, RSS
and disk bytes per entry, snapshot and reopen time. Vectors are random unit vectors (dim 384, MiniLM's
size); texts and payloads are shaped like real entries. The cost curve is plotted.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import Report, cmdline, progress

DIM = 384
LEVELS = (1_000, 10_000, 100_000, 1_000_000)
CHUNK = 20_000
PAYLOAD = (b'{"id":"chatcmpl-0","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",'
           b'"choices":[{"index":0,"message":{"role":"assistant","content":"' + b"x" * 160 + b'"},'
           b'"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":48,"total_tokens":72}}')


def rss_bytes(field: str = "RssAnon") -> int:
    """Resident memory of this process. RssAnon excludes LMDB's file-backed pages (reclaimable page cache,
    shared by every process that maps the file); RssFile is those pages."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def disk_bytes(path: Path) -> int:
    """Allocated bytes (LMDB files are sparse: st_size would overstate them)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def text_of(i: int) -> str:
    return f"How do I configure feature {i} of service {i % 997} for region {i % 31}?"


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


class ScaleCache:
    """Adapter over ``cache.SemanticCache``: the only place that knows its API (it is still settling)."""

    def __init__(self, path: Path) -> None:
        from cache import CacheConfig, SemanticCache

        self.path = path
        cfg = CacheConfig(durable=False, max_entries=None, max_map_size=64 << 30, map_size=1 << 30)
        self.cache = SemanticCache.open(path, f"random-{DIM}", DIM, cfg)
        self.partition = hashlib.blake2b(b"bench-scale", digest_size=16).digest()

    def scope(self, i: int) -> Any:
        from cache import Scope

        key = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16).digest()
        return Scope("default", self.partition, key, text_of(i))

    def bulk_insert(self, start: int, vectors: np.ndarray) -> None:
        """One transaction per chunk (``SemanticCache.insert_many``)."""
        scopes = [self.scope(start + k) for k in range(len(vectors))]
        self.cache.insert_many([(s, v, PAYLOAD) for s, v in zip(scopes, vectors, strict=True)])

    def insert(self, i: int, vector: np.ndarray) -> None:
        self.cache.insert(self.scope(i), vector, PAYLOAD)

    def lookup(self, i: int, vector: np.ndarray) -> Any:
        return self.cache.lookup(self.scope(i), vector)

    def lookup_exact(self, i: int) -> Any:
        return self.cache.lookup_exact(self.scope(i))

    def snapshot(self) -> None:
        self.cache.snapshot()

    def close(self) -> None:
        self.cache.close()

    def entries(self) -> int:
        return int(self.cache.stats().entries)


def timed_ms(fn: Any, args: Iterator[tuple[Any, ...]]) -> np.ndarray:
    out = []
    gc.disable()
    try:
        for a in args:
            t = time.perf_counter_ns()
            fn(*a)
            out.append(time.perf_counter_ns() - t)
    finally:
        gc.enable()
    return np.asarray(out, np.float64) / 1e6


def measure_lookups(c: ScaleCache, n_entries: int, rng: np.random.Generator, stored: dict[int, np.ndarray],
                    queries: int) -> dict[str, Any]:
    ids = list(stored)[:queries]
    near = []
    for i in ids:  # a near-duplicate of a stored vector: the hit path (search + guards + entry read)
        v = stored[i] + rng.standard_normal(DIM, dtype=np.float32) * 0.01
        near.append((i, v / np.linalg.norm(v)))
    hits = sum(c.lookup(i, v) is not None for i, v in near[:50])
    hit_ms = timed_ms(c.lookup, iter(near))
    rand = unit_vectors(rng, len(ids))
    miss_ms = timed_ms(c.lookup, ((n_entries + 10 + k, rand[k]) for k in range(len(ids))))
    exact_ms = timed_ms(c.lookup_exact, ((i,) for i in ids))

    def p(a: np.ndarray) -> dict[str, float]:
        p50, p99 = np.percentile(a, (50, 99))
        return {"p50_ms": float(p50), "p99_ms": float(p99)}

    return {"near_hit": p(hit_ms), "random_miss": p(miss_ms), "exact": p(exact_ms), "near_hit_rate": hits / 50}


def grow(c: ScaleCache, have: int, target: int, rng: np.random.Generator, stored: dict[int, np.ndarray],
         advance: Any) -> float:
    """Bulk-insert entries [have, target); keeps a sample of vectors to query later. Seconds taken."""
    t0 = time.perf_counter()
    i = have
    while i < target:
        n = min(CHUNK, target - i)
        vecs = unit_vectors(rng, n)
        for k in range(0, n, max(1, n // 50)):  # ~50 samples per chunk
            stored[i + k] = vecs[k].copy()
        c.bulk_insert(i, vecs)
        i += n
        advance(n)
    return time.perf_counter() - t0


def run(levels: tuple[int, ...], work: Path, queries: int, report: Report) -> list[dict[str, Any]]:
    rng = np.random.default_rng(42)
    stored: dict[int, np.ndarray] = {}
    rss0 = rss_bytes()
    rows: list[dict[str, Any]] = []
    c = ScaleCache(work)
    have = 0
    with progress("inserting", levels[-1]) as advance:
        for level in levels:
            bulk_s = grow(c, have, level - 200, rng, stored, advance)
            bulk_n = level - 200 - have
            single = unit_vectors(rng, 200)
            t = time.perf_counter()
            for k in range(200):
                c.insert(level - 200 + k, single[k])
            single_s = time.perf_counter() - t
            advance(200)
            have = level
            lk = measure_lookups(c, level, rng, stored, queries)
            rss = rss_bytes()
            t = time.perf_counter()
            c.snapshot()
            snap_s = time.perf_counter() - t
            c.close()
            gc.collect()
            t = time.perf_counter()
            c = ScaleCache(work)
            reopen_s = time.perf_counter() - t
            after = measure_lookups(c, level, rng, stored, min(queries, 500))
            row = {"entries": c.entries(), "bulk_insert_per_s": bulk_n / bulk_s if bulk_s else None,
                   "insert_per_s": 200 / single_s, "lookup": lk, "lookup_after_reopen": after,
                   "rss_bytes": rss, "rss_bytes_per_entry": (rss - rss0) / level,
                   "rss_file_bytes": rss_bytes("RssFile"), "peak_rss_bytes": rss_bytes("VmHWM"),
                   "disk_bytes": disk_bytes(work), "disk_bytes_per_entry": disk_bytes(work) / level,
                   "snapshot_s": snap_s, "reopen_s": reopen_s}
            rows.append(row)
    c.close()
    return rows


def tabulate(report: Report, rows: list[dict[str, Any]]) -> None:
    report.table("scale: one partition, random unit vectors (dim 384); lookups without the encoder", [
        "entries", "bulk ins/s", "insert()/s", "hit p50 ms", "hit p99 ms", "miss p99 ms", "exact p99 ms",
        "anon RSS B/entry", "disk B/entry", "snapshot s", "reopen s", "hit p99 after reopen"],
        [[r["entries"], r["bulk_insert_per_s"], r["insert_per_s"], r["lookup"]["near_hit"]["p50_ms"],
          r["lookup"]["near_hit"]["p99_ms"], r["lookup"]["random_miss"]["p99_ms"], r["lookup"]["exact"]["p99_ms"],
          r["rss_bytes_per_entry"], r["disk_bytes_per_entry"], r["snapshot_s"], r["reopen_s"],
          r["lookup_after_reopen"]["near_hit"]["p99_ms"]] for r in rows],
        note="hit = near-duplicate of a stored vector (search + guards + entry read); miss = random vector")
    report.data["levels"] = rows
    last = rows[-1]
    report.data["verdict"] = {"entries": last["entries"],
                              "lookup_p99_ms": max(last["lookup"]["near_hit"]["p99_ms"],
                                                   last["lookup"]["random_miss"]["p99_ms"]),
                              "within_2ms": max(last["lookup"]["near_hit"]["p99_ms"],
                                                last["lookup"]["random_miss"]["p99_ms"]) <= 2.0}

    def draw(ax: Any) -> None:
        xs = [r["entries"] for r in rows]
        ax.plot(xs, [r["lookup"]["near_hit"]["p99_ms"] for r in rows], marker="o", label="hit lookup p99 (ms)")
        ax.plot(xs, [r["lookup"]["random_miss"]["p99_ms"] for r in rows], marker="x", label="miss lookup p99 (ms)")
        ax.plot(xs, [r["disk_bytes_per_entry"] / 1000 for r in rows], marker="s", label="disk kB / entry")
        ax.plot(xs, [r["rss_bytes_per_entry"] / 1000 for r in rows], marker="^", label="anon RSS kB / entry")
        ax.axhline(2.0, color="red", ls="--", label="2 ms lookup budget")
        ax.set_xscale("log")
        ax.set_xlabel("entries in one partition")
        ax.set_title("cost curve")
        ax.legend(fontsize=8)

    report.plot("scale", draw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="thrifty bench scale", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--out", type=Path, default=Path("results/scale"))
    p.add_argument("--max", type=int, default=LEVELS[-1], help="largest level (default 1,000,000)")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--dir", type=Path, help="cache directory (default: a temp dir, removed afterwards)")
    p.add_argument("--short", action="store_true", help="1k and 10k only")
    args = p.parse_args(argv or [])
    top = 10_000 if args.short else args.max
    levels = tuple(x for x in LEVELS if x <= top) or (top,)
    report = Report("scale", args.out, command=cmdline("scale", argv))
    report.note("Preliminary unless stated: figures measured on a shared 2-core machine.")
    tmp = Path(tempfile.mkdtemp(prefix="thrifty-scale-")) if args.dir is None else args.dir
    try:
        rows = run(levels, tmp, args.queries, report)
    finally:
        if args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    tabulate(report, rows)
    report.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))

