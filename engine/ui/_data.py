"""The dashboard's aggregations over the ledger, the cache and the dispatcher.

Every query runs in SQLite (which releases the GIL while it steps) on a worker thread, never on the event
loop, over the ``ts`` index; results are kept for :data:`TTL_S` (longer when they are costly: see
:class:`Memo`) and computed once for every poller asking at the same time.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from engine.errors import RequestError
from engine.ui._rollup import DIMS as SPEND_DIMS
from engine.ui._rollup import Rollup, month_start, percentile

if TYPE_CHECKING:
    from engine.engine import Engine

TTL_S = 1.0
DUTY = 0.05  # the most of one core's time the dashboard's aggregations may take (see Memo)
NAMESPACE_TTL_S = 30.0  # the per-namespace sizes need a walk over the cache's entries
NAMESPACE_SCAN_MAX = 200_000
# window -> (span, bucket) in seconds: 60, 48, 84 and 30 points
WINDOWS: dict[str, tuple[int, int]] = {"1h": (3600, 60), "24h": (86400, 1800), "7d": (7 * 86400, 7200),
                                       "30d": (30 * 86400, 86400)}


class Memo:
    """Results by key, kept for ``ttl`` seconds or :data:`DUTY`'s share of their own cost, whichever is
    longer; one computation per key at a time (the others wait for it).

    A result that took ``c`` seconds to compute is kept ``c / DUTY`` seconds: however large the ledger and
    however many pages poll, the dashboard's aggregations take at most DUTY of one core's time from the
    gateway (a 24-hour overview of 100,000 requests that takes 1 s to compute is refreshed every 20 s; on
    small ledgers every second). Each result says when it was computed (``computed_at``)."""

    def __init__(self) -> None:
        self._values: dict[Any, tuple[float, float, Any]] = {}  # key -> (computed at, cost in s, value)
        self._locks: dict[Any, asyncio.Lock] = {}
        self._guard = threading.Lock()

    def _fresh(self, key: Any, ttl: float) -> Any:
        hit = self._values.get(key)
        if hit is not None and time.monotonic() - hit[0] < max(ttl, hit[1] / DUTY):
            return hit[2]
        return None

    async def get(self, key: Any, ttl: float, compute: Callable[[], Any], *, force: bool = False) -> Any:
        value = None if force else self._fresh(key, ttl)
        if value is not None:
            return value
        with self._guard:
            lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            value = None if force else self._fresh(key, ttl)
            if value is not None:
                return value
            t0 = time.monotonic()
            value = await asyncio.to_thread(compute)
            cost = time.monotonic() - t0
            if isinstance(value, dict):
                value = {**value, "computed_at": time.time(), "compute_s": round(cost, 4)}
            if len(self._values) > 256:  # bounded: keys come from a few query parameters
                self._values.clear()
            self._values[key] = (time.monotonic(), cost, value)
            return value


def window_of(raw: str | None) -> tuple[str, int, int]:
    name = raw or "24h"
    if name not in WINDOWS:
        raise RequestError(f"window must be one of {', '.join(WINDOWS)}, got {name[:20]!r}", param="window")
    return (name, *WINDOWS[name])


def _start(now: float, span: int, step: int) -> float:
    """The first bucket's start: bucket edges on multiples of ``step`` (stable between polls)."""
    return (math.floor(now / step) + 1) * step - span


def _pct(p: float) -> str:
    """Nearest-rank percentile row number for ``n`` rows, in SQL: ceil(p * n), at least 1."""
    return f"MAX(1, CAST({p} * n AS INTEGER) + ({p} * n > CAST({p} * n AS INTEGER)))"


def _percentiles(engine: Engine, column: str, start: float, step: int | None, group: str | None = None,
                 where: str = "") -> list[dict[str, Any]]:
    """p50 and p99 of ``column`` per bucket (``step``) or per ``group`` column, in SQLite."""
    key = f"CAST((ts - {start}) / {step} AS INTEGER)" if step else (group or "0")
    sql = (f"SELECT k, MAX(CASE WHEN rn = {_pct(0.5)} THEN v END) AS p50, "
           f"MAX(CASE WHEN rn = {_pct(0.99)} THEN v END) AS p99 FROM ("
           f"SELECT {key} AS k, {column} AS v, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {column}) AS rn, "
           f"COUNT(*) OVER (PARTITION BY {key}) AS n FROM requests WHERE ts >= ?{where}) GROUP BY k")
    return engine.ledger.query(sql, (start,))


def _reference(engine: Engine, models: list[str], asked: str | None) -> Any:
    """The reference model routing savings are measured against: the one asked for, else the dearest (by
    output price) of the models that served the window."""
    catalog = engine.catalog
    if asked:
        if asked not in catalog:
            raise RequestError(f"reference: unknown model {asked[:80]!r}", param="reference")
        return catalog.get(asked)
    known = [catalog.get(m) for m in models if m and m in catalog]
    return max(known, key=lambda e: (e.price.output, e.price.input), default=None)


def _cost(entry: Any, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * entry.price.input + completion_tokens * entry.price.output) / 1e6


def overview(engine: Engine, window: str, reference: str | None, now: float | None = None,
             rollup: Rollup | None = None) -> dict[str, Any]:
    """Totals and per-bucket series of the window, today's and this month's spend against the budgets.
    From ``rollup`` (the ledger folded into minutes, refreshed with the rows added since the last call)."""
    now = time.time() if now is None else now
    name, span, step = window_of(window)
    start = _start(now, span, step)
    n = span // step
    rollup = rollup or Rollup()
    rollup.refresh(engine.ledger, now)
    v = rollup.view(start, step, n)
    keys = ("requests", "spend_usd", "saved_usd", "exact", "hit", "miss", "errors")
    series: dict[str, list[float]] = {k: [b[k] for b in v["sums"]] for k in keys}
    series["overhead_p50"] = [percentile(h, 0.5) or 0.0 for h in v["hists"]]
    series["overhead_p99"] = [percentile(h, 0.99) or 0.0 for h in v["hists"]]
    ref = _reference(engine, sorted({m for r in v["routed"] for m in r}), reference)
    series["routing_saved_usd"] = [sum(_cost(ref, a[0], a[1]) - a[2] for a in r.values()) if ref is not None else 0.0
                                   for r in v["routed"]]
    total = {k: sum(series[k]) for k in (*keys, "routing_saved_usd")}
    req = total["requests"]
    t = time.gmtime(now)
    day, month = time.strftime("%Y-%m-%d", t), time.strftime("%Y-%m", t)
    return {
        "window": name, "step_s": step, "start": start, "now": now,
        "series": series,
        "totals": {**total, "hit_rate": (total["exact"] + total["hit"]) / req if req else 0.0,
                   "error_rate": total["errors"] / req if req else 0.0,
                   "overhead_p50": percentile(v["whole"], 0.5), "overhead_p99": percentile(v["whole"], 0.99)},
        "reference_model": ref.id if ref is not None else None,
        "spend": {"today_usd": rollup.spend_since(math.floor(now / 86400) * 86400),
                  "month_usd": rollup.spend_since(month_start(now)), "day": day, "month": month},
        "budgets": msgspec.to_builtins(engine.budgets.states(now)),
    }


def spend(engine: Engine, window: str, now: float | None = None, rollup: Rollup | None = None) -> dict[str, Any]:
    """Spend per bucket by model, provider, tenant and virtual key, from ``rollup`` (see overview)."""
    now = time.time() if now is None else now
    name, span, step = window_of(window)
    start = _start(now, span, step)
    rollup = rollup or Rollup()
    rollup.refresh(engine.ledger, now)
    by = rollup.spend_view(start, step, span // step)
    out: dict[str, Any] = {"window": name, "step_s": step, "start": start, "now": now, "by": {}}
    for dim in SPEND_DIMS:
        out["by"][dim] = [{"key": k, "requests": int(v[0]), "spend_usd": v[1], "series": v[2]}
                          for k, v in sorted(by[dim].items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))]
    out["content_logging"] = bool(engine.ledger.log_content)
    return out


def top_prompts(engine: Engine, window: str, now: float | None = None) -> dict[str, Any]:
    """The window's prompts by cost, with content logging on (else none are kept)."""
    now = time.time() if now is None else now
    _, span, step = window_of(window)
    if not engine.ledger.log_content:
        return {"top_prompts": []}
    return {"top_prompts": engine.ledger.query(
        "SELECT prompt, COUNT(*) AS requests, COALESCE(SUM(cost_usd), 0) AS spend_usd FROM requests "
        "WHERE ts >= ? AND prompt IS NOT NULL GROUP BY prompt ORDER BY spend_usd DESC LIMIT 10",
        (_start(now, span, step),))}


def _since_start(engine: Engine) -> tuple[dict[str, float], dict[str, float]]:
    """(failed attempts, upstream answers) per deployment since this process started, from its metrics:
    an attempt that failed and was recovered by a retry or a fallback is counted here, not in the ledger."""
    failed: dict[str, float] = {}
    for metric in engine.metrics.upstream_errors.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                d = sample.labels["deployment"]
                failed[d] = failed.get(d, 0.0) + sample.value
    answered: dict[str, float] = {}
    for metric in engine.metrics.requests.collect():
        for sample in metric.samples:
            lab = sample.labels
            if sample.name.endswith("_total") and lab["provider"] not in ("cache", "none", "") \
                    and lab["status"] < "400":
                d = f"{lab['provider']}/{lab['model']}"
                answered[d] = answered.get(d, 0.0) + sample.value
    return failed, answered


def providers(engine: Engine, window: str, now: float | None = None) -> dict[str, Any]:
    """Per deployment (provider/model): answers and upstream latency p50/p99 in the window (ledger), failed
    attempts and error rate since start (metrics), circuits; the last failed requests with their attempts."""
    now = time.time() if now is None else now
    name, span, _ = window_of(window)
    start = now - span
    group = "provider || '/' || model"
    where = " AND provider IS NOT NULL AND provider != 'cache' AND model IS NOT NULL"
    rows = engine.ledger.query(
        f"SELECT provider, model, {group} AS deployment, COUNT(*) AS requests, "
        f"AVG(latency_ms - overhead_ms) AS upstream_ms_avg, SUM(attempts > 1) AS retried "
        f"FROM requests WHERE ts >= ?{where} GROUP BY deployment ORDER BY requests DESC", (start,))
    pct = {r["k"]: r for r in _percentiles(engine, "latency_ms - overhead_ms", start, None, group, where)}
    states = engine.dispatcher.breakers.states()
    failed, answered = _since_start(engine)
    seen = {r["deployment"] for r in rows}
    rows += [{"provider": d.split("/", 1)[0], "model": d.split("/", 1)[-1], "deployment": d, "requests": 0,
              "upstream_ms_avg": None, "retried": 0} for d in sorted(set(failed) - seen)]
    by_provider: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = r["deployment"]
        p = pct.get(d, {})
        r["upstream_ms_p50"], r["upstream_ms_p99"] = p.get("p50"), p.get("p99")
        r["failed_attempts"], ok = failed.get(d, 0.0), answered.get(d, 0.0)
        r["error_rate"] = r["failed_attempts"] / (r["failed_attempts"] + ok) if r["failed_attempts"] + ok else 0.0
        r["circuit"] = states.get(d, "closed")
        acc = by_provider.setdefault(r["provider"], {"provider": r["provider"], "requests": 0, "failed_attempts": 0.0,
                                                     "answered": 0.0})
        acc["requests"] += r["requests"]
        acc["failed_attempts"] += r["failed_attempts"]
        acc["answered"] += ok
    for acc in by_provider.values():
        tried = acc["failed_attempts"] + acc["answered"]
        acc["error_rate"] = acc["failed_attempts"] / tried if tried else 0.0
    recent = [f for f in reversed(engine.upstream_failures) if f["ts"] >= start]
    return {"window": name, "deployments": rows, "providers": list(by_provider.values()),
            "circuits": states, "open_circuits": sorted(d for d, s in states.items() if s == "open"),
            "recent_errors": recent}


def namespaces(engine: Engine) -> dict[str, Any]:
    """Entries and bytes per cache space (``tenant/namespace``; ``/name`` when shared), by a walk over the
    entries (at most NAMESPACE_SCAN_MAX: ``complete`` says whether it saw them all)."""
    cache = engine.cache
    acc: dict[str, list[int]] = {}
    seen = 0
    for _, entry in cache.store.iter_entries():
        seen += 1
        if seen > NAMESPACE_SCAN_MAX:
            break
        a = acc.setdefault(entry.namespace, [0, 0])
        a[0] += 1
        a[1] += entry.size
    spaces = []
    for label, (count, size) in sorted(acc.items(), key=lambda kv: -kv[1][1]):
        tenant, _, ns = label.partition("/")
        spaces.append({"space": label, "tenant": tenant or None, "namespace": ns, "shared": not tenant,
                       "entries": count, "bytes": size})
    return {"spaces": spaces, "complete": seen <= NAMESPACE_SCAN_MAX}


def quality(engine: Engine) -> list[dict[str, Any]]:
    """Per (tenant, namespace) false-hit estimates from shadow and feedback labels (engine.feedback)."""
    from engine.feedback import quality as estimate

    return estimate(engine.ledger)


class ProbeRequest(msgspec.Struct, forbid_unknown_fields=True):
    prompt: str
    tenant: str = "default"
    namespace: str | None = None
    model: str = "auto"
    threshold: float | None = None


async def probe(engine: Engine, body: bytes) -> dict[str, Any]:
    """What would this prompt hit? The exact entry if any, then the nearest entries of its partition with
    their similarity and the verifier's verdict on each. Read-only: no counter or hit count moves."""
    from cache import scope as scope_of
    from router.types import ChatRequest

    try:
        req = msgspec.json.decode(body, type=ProbeRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise RequestError(f"probe: {exc}; body: {{\"prompt\": str, \"tenant\"?, \"namespace\"?, \"model\"?, "
                           f"\"threshold\"?}}") from exc
    if not req.prompt.strip():
        raise RequestError("probe: prompt must not be empty", param="prompt")
    if req.threshold is not None and not 0.0 <= req.threshold <= 1.0:
        raise RequestError("probe: threshold must be between 0 and 1", param="threshold")
    chat = msgspec.convert({"model": req.model, "messages": [{"role": "user", "content": req.prompt}]}, ChatRequest)
    owner, ns = engine.space_of(req.tenant, req.namespace)
    sc = scope_of(chat, namespace=ns, tenant=owner)
    cache = engine.cache
    exact = cache.store.get_exact(sc.exact_key)
    vector = await engine.embed(sc.text or req.prompt)
    policy = cache.policy

    def judge() -> list[dict[str, Any]]:
        out = []
        for entry_id, entry, similarity in cache.candidates(sc, vector, max(5, policy.top_k)):
            verdict = policy.verify(sc.text, entry.text, similarity, req.threshold)
            out.append({"id": entry_id, "text": entry.text, "model": entry.model, "similarity": similarity,
                        "cost_usd": entry.cost_usd, "hits": entry.hits, "accept": bool(verdict.accept),
                        "reason": verdict.reason, "score": getattr(verdict, "score", None)})
        return out

    candidates = await asyncio.to_thread(judge)
    first_bar = getattr(policy, "first_bar", 0.0)
    bar = first_bar if req.threshold is None else min(first_bar, req.threshold)
    for c in candidates:  # lookup judges only what clears the first bar, best first, and stops at a hit
        c["considered"] = c["similarity"] >= bar
    served = "exact" if exact is not None and not exact[1].expired(time.time()) else next(
        ("semantic" for c in candidates if c["considered"] and c["accept"]), "miss")
    return {"space": sc.namespace, "exact": exact[0] if exact is not None else None, "would_serve": served,
            "first_bar": first_bar, "threshold": getattr(policy, "threshold", None),
            "candidates": candidates}
