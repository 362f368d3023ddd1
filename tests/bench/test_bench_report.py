"""Results writing: JSON + Markdown + PNG with the machine's description."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import Report, Table, fmt, machine


def test_machine_description_has_the_essentials() -> None:
    m = machine()
    assert m["cores"] and m["cores"] >= 1
    assert m["python"].count(".") == 2
    assert "numpy" in m["packages"] and m["packages"]["numpy"]
    assert m["cpu"]


def test_write_json_markdown_png(tmp_path: Path) -> None:
    r = Report("demo", tmp_path / "out", quiet=True, command="thrifty bench demo --short")
    r.table("latency", ["target", "p50", "p99"], [["thrifty", 0.5, float("nan")], ["direct", 0.25, 1.0]],
            note="A B alternation")
    r.data["x"] = {"p50_ms": 0.5, "missing": float("nan")}
    r.note("preliminary")

    def draw(ax: Any) -> None:
        ax.plot([1, 2, 4], [3, 2, 1], label="a")
        ax.legend()

    r.plot("curve", draw)
    out = r.write()
    doc = json.loads((out / "demo.json").read_text())
    assert doc["suite"] == "demo" and doc["command"] == "thrifty bench demo --short"
    assert doc["results"]["x"] == {"p50_ms": 0.5, "missing": None}  # NaN -> null, strict JSON
    assert doc["machine"]["cores"] >= 1 and "packages" in doc["machine"]
    assert doc["tables"][0]["rows"][1] == ["direct", 0.25, 1.0]
    md = (out / "demo.md").read_text()
    assert "| thrifty | 0.500 | – |" in md and "![curve.png](curve.png)" in md and "preliminary" in md
    assert "cores" in md
    png = (out / "curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_fmt() -> None:
    assert fmt(None) == "–" and fmt(float("nan")) == "–"
    assert fmt(12345.6) == "12,346" and fmt(0.12345) == "0.123" and fmt(7) == "7"
    assert Table("t", ["a", "b"], [["x", 1.0]]).markdown().splitlines()[2] == "| a | b |"
