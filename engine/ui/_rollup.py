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
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.ledger import Ledger

RETAIN_S = 31 * 86400  # the longest window (30 d) and today's month
FINE_S = 3660  # kept minute by minute: the 1-hour window (and a minute of slack)
BATCH = 50_000
# Histogram bin edges in ms: 0, then 0.005 ms to 100 s with ratio 1.07.
RATIO = 1.07
EDGES: list[float] = [0.0] + [0.005 * RATIO ** i for i in range(int(math.log(2e7) / math.log(RATIO)) + 2)]
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
        self._sql_bins = True  # SQLite sums the new rows (its ln() bins the histogram); else Python, row by row
        self._lock = threading.Lock()

    def refresh(self, ledger: Ledger, now: float) -> None:
        with self._lock:
            top = ledger.query("SELECT COALESCE(MAX(rowid), 0) AS m FROM requests")[0]["m"]
            if top < self._rowid:  # another ledger file, or rows removed: start again
                self._rowid, self._minutes, self._halves, self._fine_from = 0, {}, {}, 0
            oldest = now - RETAIN_S
            if top > self._rowid:
                if self._sql_bins:
                    try:
                        self._fold_grouped(ledger, top, oldest)
                    except sqlite3.OperationalError:  # an SQLite without its math functions (ln)
                        self._sql_bins = False
                if not self._sql_bins:
                    self._fold_rows(ledger, top, oldest)
            # Rows at or below ``top`` that were older than the retention are skipped for good.
            self._rowid = max(self._rowid, top)
            first = int(oldest // 60)
            self._fine_from = max(self._fine_from, int((now - FINE_S) // 60))
            for m in [m for m in self._minutes if m < self._fine_from]:
                self._half(m).merge(self._minutes.pop(m))
            for h in [h for h in self._halves if h < first]:
                del self._halves[h]

    def _fold_rows(self, ledger: Ledger, top: int, oldest: float) -> None:
        """The new rows one by one (in batches of rows)."""
        after = self._rowid
        while True:
            rows = ledger.query(f"SELECT {_COLUMNS} FROM requests WHERE rowid > ? AND rowid <= ? AND ts >= ? "
                                f"ORDER BY rowid LIMIT {BATCH}", (after, top, oldest))
            for row in rows:
                self._fold(row)
            if len(rows) < BATCH:
                return
            after = rows[-1]["r"]

    def _fold_grouped(self, ledger: Ledger, top: int, oldest: float) -> None:
        """The new rows summed by SQLite per minute (and bin, model, dimension value): Python sees groups,
        not rows. All four reads cover the same rowid range, so they stay consistent with each other."""
        where = "FROM requests WHERE rowid > ? AND rowid <= ? AND ts >= ?"
        args = (self._rowid, top, oldest)
        m = "CAST(ts / 60 AS INTEGER)"
        sums = ledger.query(
            f"SELECT {m} AS m, COUNT(*) AS n, TOTAL(cost_usd) AS c, TOTAL(saved_usd) AS s, SUM(cache = 'exact') AS e, "
            f"SUM(cache = 'hit') AS h, SUM(cache = 'miss') AS x, SUM(status >= 400) AS r {where} GROUP BY m", args)
        o = "COALESCE(overhead_ms, 0)"
        hist = ledger.query(
            f"SELECT {m} AS m, CASE WHEN {o} < {EDGES[1]} THEN 1 ELSE CAST(floor(ln({o} / {EDGES[1]}) / ln({RATIO})) "
            f"AS INTEGER) + 2 END AS b, COUNT(*) AS n {where} GROUP BY m, b", args)
        routed = ledger.query(
            f"SELECT {m} AS m, model, TOTAL(prompt_tokens) AS pt, TOTAL(completion_tokens) AS ct, TOTAL(cost_usd) AS c "
            f"{where} AND cache IN ('miss', 'bypass') AND status < 400 AND model IS NOT NULL AND model != '' "
            f"GROUP BY m, model", args)
        spend = ledger.query(" UNION ALL ".join(
            f"SELECT '{dim}' AS d, {m} AS m, COALESCE({column}, '') AS k, COUNT(*) AS n, TOTAL(cost_usd) AS c "
            f"{where} GROUP BY m, k" for dim, column in DIMS.items()), args * len(DIMS))
        for r in sums:
            t = self._at(r["m"]).sums
            for i, v in enumerate((r["n"], r["c"], r["s"], r["e"], r["h"], r["x"], r["r"])):
                t[i] += v or 0
        for r in hist:
            h, b = self._at(r["m"]).hist, min(r["b"], len(EDGES))
            h[b] = h.get(b, 0) + r["n"]
        for r in routed:
            acc = self._at(r["m"]).routed.setdefault(r["model"], [0.0, 0.0, 0.0])
            acc[0] += r["pt"]
            acc[1] += r["ct"]
            acc[2] += r["c"]
        for r in spend:
            acc = self._at(r["m"]).spend.setdefault((r["d"], r["k"]), [0.0, 0.0])
            acc[0] += r["n"]
            acc[1] += r["c"]

    def _at(self, m: int) -> Minute:
        """Where minute ``m``'s sums go: its own Minute, or its half hour once that hour is merged."""
        if m < self._fine_from:
            return self._half(m)
        minute = self._minutes.get(m)
        if minute is None:
            minute = self._minutes[m] = Minute()
        return minute

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
        minute = self._at(int(row["ts"] // 60))
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
