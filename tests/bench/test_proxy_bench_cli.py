"""``thrifty bench proxy``'s options, and (slow) one tiny end-to-end run against ``thrifty serve``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import proxy_bench


def test_plan_defaults_short_and_overrides() -> None:
    full = proxy_bench.plan_from(proxy_bench.parse_args([], "p", "results/proxy"))
    assert full.levels == (1, 2, 4, 8, 16, 32, 64) and full.seq == 2000
    short = proxy_bench.plan_from(proxy_bench.parse_args(["--short"], "p", "results/proxy"))
    assert short.seq < full.seq and 32 in short.levels
    custom = proxy_bench.plan_from(proxy_bench.parse_args(["--levels", "1,4", "--seq", "7"], "p", "x"))
    assert custom.levels == (1, 4) and custom.seq == 7


@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = proxy_bench.main(["--out", str(out), "--seq", "30", "--levels", "1,4", "--per-level", "40",
                           "--level-seconds", "1", "--hits", "40", "--work", str(tmp_path / "work")])
    assert rc == 0
    doc = json.loads((out / "proxy.json").read_text())
    res = doc["results"]
    assert res["sequential"]["thrifty"]["n"] == 30 and res["sequential"]["outcomes"] == {"bypass": 30}
    assert res["hits"]["exact"]["outcomes"].get("exact", 0) > 0
    assert set(res["sweep"]["thrifty"]) == {"1", "4"}
    assert (out / "sweep_throughput.png").exists() and (out / "proxy.md").exists()
