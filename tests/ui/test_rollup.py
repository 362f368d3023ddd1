"""The Overview's incremental rollup (engine/ui/_rollup.py) against plain SQL over the same ledger: the same
sums per bucket, percentiles within one histogram bin, rows added later (also with older timestamps, into
hours already merged into half hours) folded in by the next refresh, and nothing counted twice."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import pytest

from engine import Engine
from engine.ledger import UsageRecord, new_request_id
from engine.ui import _data
from engine.ui._rollup import Rollup


def _rows(ledger: object, n: int, now: float, rng: random.Random, spread_s: float) -> None:
    for _ in range(n):
        cache = rng.choice(["miss", "miss", "exact", "hit", "bypass"])
        ledger.record(UsageRecord(  # type: ignore[attr-defined]
            request_id=new_request_id(), ts=now - rng.uniform(0, spread_s), tenant=rng.choice(["a", "b"]),
            cache=cache, status=rng.choice([200] * 9 + [502]), model=rng.choice(["gpt-4o", "gpt-4o-mini"]),
            provider="cache" if cache in ("exact", "hit") else "fake", cost_usd=rng.uniform(0, 0.01),
            saved_usd=rng.uniform(0, 0.01) if cache in ("exact", "hit") else 0.0,
            overhead_ms=rng.lognormvariate(0, 1), prompt_tokens=rng.randint(1, 500),
            completion_tokens=rng.randint(1, 500)))
    ledger.flush()  # type: ignore[attr-defined]


def _exact(engine: Engine, start: float, step: int, n: int) -> dict[str, list[float]]:
    out = {k: [0.0] * n for k in ("requests", "spend_usd", "saved_usd", "exact", "hit", "errors")}
    for r in engine.ledger.query(
            f"SELECT CAST((ts - {start}) / {step} AS INTEGER) AS b, COUNT(*) AS requests, SUM(cost_usd) AS spend_usd, "
            "SUM(saved_usd) AS saved_usd, SUM(cache = 'exact') AS exact, SUM(cache = 'hit') AS hit, "
            "SUM(status >= 400) AS errors FROM requests WHERE ts >= ? GROUP BY b", (start,)):
        if 0 <= r["b"] < n:
            for k in out:
                out[k][r["b"]] = r[k]
    return out


@pytest.mark.parametrize(("window", "grouped"), [("1h", True), ("24h", True), ("7d", True), ("30d", True),
                                                 ("24h", False)])
def test_the_rollup_equals_sql_and_folds_new_rows_once(tmp_path: Path, window: str, grouped: bool) -> None:
    """``grouped``: SQLite sums the new rows (the usual path); else the row-by-row path of an SQLite
    without math functions."""
    engine = Engine.from_config({"data_dir": str(tmp_path / "data"), "cache": {"encoder": "hashing"}})
    rng = random.Random(5)
    now = time.time()
    rollup = Rollup()
    rollup._sql_bins = grouped
    try:
        _rows(engine.ledger, 3000, now, rng, 3 * 86400)
        _rows(engine.ledger, 50, now - 40 * 86400, rng, 3600)  # beyond the retention: never counted
        for round_ in range(3):
            got = _data.overview(engine, window, None, now=now, rollup=rollup)
            exact = _exact(engine, got["start"], got["step_s"], len(got["series"]["requests"]))
            for k, values in exact.items():
                assert got["series"][k] == pytest.approx(values, rel=1e-9, abs=1e-12), (round_, k)
            overheads = sorted(r["o"] for r in engine.ledger.query(
                "SELECT overhead_ms AS o FROM requests WHERE ts >= ?", (got["start"],)))
            for p in (0.5, 0.99):
                true = overheads[max(1, math.ceil(p * len(overheads))) - 1]
                assert true <= got["totals"][f"overhead_p{int(p * 100)}"] <= true * 1.07 + 1e-9
            today = engine.ledger.query("SELECT SUM(cost_usd) AS s FROM requests WHERE day = ?",
                                        (time.strftime("%Y-%m-%d", time.gmtime(now)),))[0]["s"]
            assert got["spend"]["today_usd"] == pytest.approx(today, rel=1e-9)
            month = engine.ledger.query("SELECT SUM(cost_usd) AS s FROM requests WHERE month = ?",
                                        (time.strftime("%Y-%m", time.gmtime(now)),))[0]["s"]
            assert got["spend"]["month_usd"] == pytest.approx(month, rel=1e-9)
            by = _data.spend(engine, window, now=now, rollup=rollup)["by"]
            for dim, column in (("model", "model"), ("tenant", "tenant"), ("key", "virtual_key")):
                want = {r["k"]: (r["n"], r["s"]) for r in engine.ledger.query(
                    f"SELECT COALESCE({column}, '') AS k, COUNT(*) AS n, SUM(cost_usd) AS s FROM requests "
                    f"WHERE ts >= ? GROUP BY k", (got["start"],))}
                assert {r["key"]: r["requests"] for r in by[dim]} == {k: v[0] for k, v in want.items()}
                for r in by[dim]:
                    assert r["spend_usd"] == pytest.approx(want[r["key"]][1], rel=1e-9)
                    assert sum(r["series"]) == pytest.approx(r["spend_usd"], rel=1e-9)
            assert rollup._sql_bins == grouped  # the path under test was the one taken
            # More rows, some with timestamps inside already-counted minutes (written late by another worker).
            _rows(engine.ledger, 200, now, rng, 1800)
            _rows(engine.ledger, 100, now - 7200, rng, 86400)  # late, into half hours already merged
    finally:
        engine.ledger.close()
        engine.audit.close()
