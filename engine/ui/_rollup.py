"""Per-minute sums of the ledger for the Overview, kept up to date incrementally.

The ledger only ever grows (rows are INSERTed, never updated), so the rows a poll has not seen are those
with a larger ``rowid``: each refresh reads only them (a range scan on the table's own key) and folds them
into per-minute sums, so a page refreshing every second costs the new rows of that second, not the window.
Added latency percentiles come from per-minute histograms with logarithmic bins (:data:`EDGES`, about 7 %
wide: a percentile is reported as its bin's upper edge, within 7 % above the exact value).
"""

from __future__ import annotations

import bisect
import calendar
import math
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.ledger import Ledger

RETAIN_S = 31 * 86400  # the longest window (30 d) and today's month
FINE_S = 3660  # kept minute by minute: the 1-hour window (and a minute of slack)
BATCH = 50_000
# Histogram bin edges in ms: 0, then 0.005 ms to 100 s with ratio 1.07.
EDGES: list[float] = [0.0] + [0.005 * 1.07 ** i for i in range(int(math.log(2e7) / math.log(1.07)) + 2)]
_SUMS = ("requests", "spend_usd", "saved_usd", "exact", "hit", "miss", "errors")
_COLUMNS = ("rowid AS r, ts, cost_usd, saved_usd, cache, status, overhead_ms, model, prompt_tokens, completion_tokens, "
            "provider, tenant, virtual_key")
DIMS = {"model": "model", "provider": "provider", "tenant": "tenant", "key": "virtual_key"}  # Spend panel


class Minute:
    __slots__ = ("hist", "routed", "spend", "sums")

    def __init__(self) -> None:
        self.sums = [0.0] * len(_SUMS)
        self.hist: dict[int, int] = {}  # overhead bin -> count
        self.routed: dict[str, list[float]] = {}  # model -> [prompt tokens, completion tokens, cost] of answers
        self.spend: dict[tuple[str, str], list[float]] = {}  # (dimension, value) -> [requests, cost]

    def merge(self, other: Minute) -> None:
        for i, v in enumerate(other.sums):
            self.sums[i] += v
        for k, c in other.hist.items():
            self.hist[k] = self.hist.get(k, 0) + c
        for model, acc in other.routed.items():
            dest = self.routed.setdefault(model, [0.0, 0.0, 0.0])
            for i in range(3):
                dest[i] += acc[i]
        for key, acc in other.spend.items():
            dest = self.spend.setdefault(key, [0.0, 0.0])
            dest[0] += acc[0]
            dest[1] += acc[1]


class Rollup:
    """The ledger folded into minutes; :meth:`refresh` reads the rows added since the last call.

    Only the last :data:`FINE_S` are kept minute by minute (the 1-hour window's buckets); older minutes are
    merged into half hours, which every longer window's buckets (30 min, 2 h, 1 day) are made of: memory
    grows with the half hours of 31 days, not the minutes."""

    def __init__(self) -> None:
        self._rowid = 0
        self._minutes: dict[int, Minute] = {}  # minute index -> its sums (recent)
        self._halves: dict[int, Minute] = {}  # minute index of a half hour's start -> its sums (older)
        self._fine_from = 0  # minutes before this one live in _halves
        self._lock = threading.Lock()

    def refresh(self, ledger: Ledger, now: float) -> None:
        with self._lock:
            top = ledger.query("SELECT COALESCE(MAX(rowid), 0) AS m FROM requests")[0]["m"]
            if top < self._rowid:  # another ledger file, or rows removed: start again
                self._rowid, self._minutes, self._halves, self._fine_from = 0, {}, {}, 0
            oldest = now - RETAIN_S
            while True:
                rows = ledger.query(f"SELECT {_COLUMNS} FROM requests WHERE rowid > ? AND ts >= ? "
                                    f"ORDER BY rowid LIMIT {BATCH}", (self._rowid, oldest))
                for row in rows:
                    self._fold(row)
                if rows:
                    self._rowid = max(self._rowid, rows[-1]["r"])
                if len(rows) < BATCH:
                    break
            # Rows at or below ``top`` that were older than the retention are skipped for good.
            self._rowid = max(self._rowid, top)
            first = int(oldest // 60)
            self._fine_from = max(self._fine_from, int((now - FINE_S) // 60))
            for m in [m for m in self._minutes if m < self._fine_from]:
                self._half(m).merge(self._minutes.pop(m))
            for h in [h for h in self._halves if h < first]:
                del self._halves[h]

    def _half(self, m: int) -> Minute:
        h = m - m % 30
        half = self._halves.get(h)
        if half is None:
            half = self._halves[h] = Minute()
        return half

    def _sources(self, first: int, last: int) -> Any:
        """(minute index, sums) of every minute and half hour that starts in [first, last)."""
        for m in range(first, last):
            minute = self._minutes.get(m)
            if minute is not None:
                yield m, minute
            if m % 30 == 0:
                half = self._halves.get(m)
                if half is not None:
                    yield m, half

    def _fold(self, row: dict[str, Any]) -> None:
        m = int(row["ts"] // 60)
        if m < self._fine_from:  # a row written late, in an hour already merged
            minute = self._half(m)
        elif m in self._minutes:
            minute = self._minutes[m]
        else:
            minute = self._minutes[m] = Minute()
        s, cache, status = minute.sums, row["cache"], row["status"]
        s[0] += 1
        s[1] += row["cost_usd"] or 0.0
        s[2] += row["saved_usd"] or 0.0
        if cache == "exact":
            s[3] += 1
        elif cache == "hit":
            s[4] += 1
        elif cache == "miss":
            s[5] += 1
        if status >= 400:
            s[6] += 1
        b = bisect.bisect_right(EDGES, row["overhead_ms"] or 0.0)
        minute.hist[b] = minute.hist.get(b, 0) + 1
        cost = row["cost_usd"] or 0.0
        for dim, column in DIMS.items():
            acc = minute.spend.get((dim, row[column] or ""))
            if acc is None:
                acc = minute.spend[(dim, row[column] or "")] = [0.0, 0.0]
            acc[0] += 1
            acc[1] += cost
        if cache in ("miss", "bypass") and status < 400 and row["model"]:
            acc = minute.routed.get(row["model"])
            if acc is None:
                acc = minute.routed[row["model"]] = [0.0, 0.0, 0.0]
            acc[0] += row["prompt_tokens"] or 0
            acc[1] += row["completion_tokens"] or 0
            acc[2] += row["cost_usd"] or 0.0

    def view(self, start: float, step: int, n: int) -> dict[str, Any]:
        """Per bucket (``n`` of ``step`` seconds from ``start``, a multiple of 60): sums, overhead histograms,
        routed answers per model; and the window's merged histogram."""
        with self._lock:
            sums = [[0.0] * len(_SUMS) for _ in range(n)]
            hists: list[dict[int, int]] = [{} for _ in range(n)]
            routed: list[dict[str, list[float]]] = [{} for _ in range(n)]
            first = int(start // 60)
            for m, minute in self._sources(first, first + n * step // 60):
                b = (m * 60 - int(start)) // step
                for i, v in enumerate(minute.sums):
                    sums[b][i] += v
                for k, c in minute.hist.items():
                    hists[b][k] = hists[b].get(k, 0) + c
                for model, acc in minute.routed.items():
                    dest = routed[b].setdefault(model, [0.0, 0.0, 0.0])
                    for i in range(3):
                        dest[i] += acc[i]
        whole: dict[int, int] = {}
        for h in hists:
            for k, c in h.items():
                whole[k] = whole.get(k, 0) + c
        return {"sums": [dict(zip(_SUMS, s, strict=True)) for s in sums], "hists": hists, "routed": routed,
                "whole": whole}

    def spend_view(self, start: float, step: int, n: int) -> dict[str, dict[str, list[Any]]]:
        """Per dimension and value: [requests, cost, cost per bucket] over ``n`` buckets from ``start``."""
        out: dict[str, dict[str, list[Any]]] = {d: {} for d in DIMS}
        with self._lock:
            first = int(start // 60)
            for m, minute in self._sources(first, first + n * step // 60):
                b = (m * 60 - int(start)) // step
                for (dim, key), (count, cost) in minute.spend.items():
                    acc = out[dim].get(key)
                    if acc is None:
                        acc = out[dim][key] = [0.0, 0.0, [0.0] * n]
                    acc[0] += count
                    acc[1] += cost
                    acc[2][b] += cost
        return out

    def spend_since(self, since: float) -> float:
        with self._lock:
            first = int(since // 60)  # a day's or a month's start: a half hour's start too
            return sum(m.sums[1] for part in (self._minutes, self._halves) for k, m in part.items() if k >= first)


def percentile(hist: dict[int, int], p: float) -> float | None:
    """The nearest-rank ``p`` percentile of a histogram, as its bin's upper edge (None when empty)."""
    n = sum(hist.values())
    if not n:
        return None
    rank = max(1, math.ceil(p * n))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return EDGES[b] if b < len(EDGES) else EDGES[-1]
    return EDGES[-1]


def month_start(now: float) -> float:
    """The start of ``now``'s month, UTC (the ledger's ``month`` column)."""
    t = time.gmtime(now)
    return float(calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, 0)))
