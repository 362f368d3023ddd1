"""``thrifty bench scale`` on a tiny cache: every figure is produced and sane."""

from __future__ import annotations

import json
from pathlib import Path

from bench import scale


def test_tiny_scale_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert scale.main(["--max", "1000", "--queries", "50", "--out", str(out), "--dir", str(tmp_path / "c")]) == 0
    doc = json.loads((out / "scale.json").read_text())
    (level,) = doc["results"]["levels"]
    assert level["entries"] == 1000
    assert level["lookup"]["near_hit_rate"] >= 0.9  # near-duplicates of stored vectors do hit
    assert 0 < level["lookup"]["near_hit"]["p50_ms"] <= level["lookup"]["near_hit"]["p99_ms"]
    assert level["disk_bytes_per_entry"] > 4 * scale.DIM  # at least the vector itself is on disk
    assert level["reopen_s"] >= 0 and level["insert_per_s"] > 0
    assert doc["command"] == "thrifty bench scale --max 1000 --queries 50 --out " + str(out) + " --dir " + str(tmp_path / "c")
    assert (out / "scale.png").exists()
