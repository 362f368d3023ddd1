"""``thrifty tune`` on a small fixture: the sweep, the recommendation under the bound, --write, --plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import tune
from engine.config import load

PAIRS = [
    ("How do I reverse a list in Python?", "How can I reverse a list in Python?", 1),
    ("What is the capital of France?", "What's the capital city of France?", 1),
    ("How do I make pancakes?", "What is a good recipe for pancakes?", 1),
    ("How tall is Mount Everest?", "What is the height of Mount Everest?", 1),
    ("Best way to learn Spanish quickly?", "How can I learn Spanish fast?", 1),
    ("How do I enable dark mode in Windows?", "How do I disable dark mode in Windows?", 0),
    ("Convert 5 km to miles", "Convert 50 km to miles", 0),
    ("What is the capital of Austria?", "What is the capital of Australia?", 0),
    ("How do I reverse a list in Python?", "How do I reverse a list in JavaScript?", 0),
    ("Why is the sky blue?", "How do I bake bread at home?", 0),
    ("What is machine learning?", "Explain machine learning in simple words.", 1),
    ("How do I sort a dict by value in Python?", "How do I sort a dict by key in Python?", 0),
]


@pytest.fixture
def fixture_pairs(tmp_path: Path, minilm, monkeypatch) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"a": a, "b": b, "label": y, "domain": "d" + str(i % 2)}) + "\n"
                            for i, (a, b, y) in enumerate(PAIRS * 3)))

    def encoder():  # type: ignore[no-untyped-def]
        return lambda texts: np.asarray(minilm.encode(list(texts)), dtype=np.float32)

    monkeypatch.setattr(tune, "_encoder", encoder)
    return path


def test_tune_recommends_within_the_bound_and_writes_the_config(fixture_pairs: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "thrifty.yaml"
    cfg.write_text("# my gateway\ndata_dir: /tmp/x  # where things live\ncache:\n  ttl_s: 3600  # one hour\n"
                   "  threshold: 0.5  # old\nrouting:\n  policy: cost\n")
    out, png = tmp_path / "tune.json", tmp_path / "tune.png"
    rc = tune.main(["--pairs", str(fixture_pairs), "--max-error", "0.1", "--bootstrap", "200",
                    "--json", str(out), "--plot", str(png), "--write", str(cfg)])
    assert rc == 0
    report = json.loads(out.read_text())
    rec = report["datasets"][0]["recommended"]
    assert rec["false_hit_rate_hi"] <= 0.1  # the upper end of its interval is within the bound
    assert rec["false_hit_rate_lo"] <= rec["false_hit_rate"] <= rec["false_hit_rate_hi"]
    assert rec["hit_rate"] > 0 and rec["precision"] >= rec["precision_lo"]
    # Nothing in the sweep with a higher hit rate meets the bound.
    curve = report["datasets"][0]["curves"][rec["policy"]]
    for hr, hi in zip(curve["hit_rate"], curve["false_hit_rate_hi"], strict=True):
        assert hi > 0.1 or hr <= rec["hit_rate"] + 1e-9
    text = cfg.read_text()
    assert "# my gateway" in text and "# one hour" in text and "# old" in text and "policy: cost" in text
    settings = load(cfg)
    assert settings.raw.cache.threshold == pytest.approx(rec["threshold"])
    assert settings.raw.cache.policy == rec["policy"]
    assert settings.raw.routing.policy == "cost" and settings.raw.cache.ttl_s == 3600
    assert png.stat().st_size > 10_000


def test_tune_split_and_groups(fixture_pairs: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "t.json"
    assert tune.main(["--pairs", str(fixture_pairs), "--max-error", "0.2", "--bootstrap", "50", "--by", "domain",
                      "--policies", "cosine", "--json", str(out)]) == 0
    groups = [d["group"] for d in json.loads(out.read_text())["datasets"]]
    assert groups == ["d0", "d1"]
    assert tune.main(["--pairs", str(fixture_pairs), "--split", "0.5", "--bootstrap", "50", "--max-error", "0.2",
                      "--json", str(out)]) == 0
    first = json.loads(out.read_text())["datasets"][0]
    assert "held-out test part" in capsys.readouterr().out
    assert first["test"]["pairs"] + first["pairs"] == len(PAIRS) * 3
    assert tune.main(["--pairs", str(fixture_pairs), "--bootstrap", "0", "--max-error", "0.2", "--policies", "cosine",
                      "--deltas", "0.05,0.2", "--json", str(out)]) == 0
    adaptive = json.loads(out.read_text())["datasets"][0]["adaptive"]
    assert [a["delta"] for a in adaptive] == [0.05, 0.2]
    assert all(a["requests"] == len(PAIRS) * 3 and 0 <= a["hit_rate"] <= 1 for a in adaptive)


def test_write_config_adds_a_missing_block(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data_dir: /tmp/y\n")
    changes = tune.write_config(cfg, {"threshold": 0.93, "adaptive.delta": 0.02, "adaptive.enabled": True})
    assert changes[0] == "cache.threshold: (unset) -> 0.93"
    s = load(cfg)
    assert s.raw.cache.threshold == 0.93 and s.raw.cache.adaptive.delta == 0.02 and s.raw.cache.adaptive.enabled
    with pytest.raises(Exception, match="threshold"):
        tune.write_config(cfg, {"threshold": 7})
    assert load(cfg).raw.cache.threshold == 0.93  # a bad value leaves the file as it was


def test_ledger_labels_are_tuned(tmp_path: Path) -> None:
    from engine.ledger import Label, Ledger, UsageRecord

    led = Ledger(tmp_path / "ledger.sqlite3", journal=False)
    rng = np.random.default_rng(0)
    for i in range(200):
        s = float(rng.uniform(0.85, 1.0))
        led.record(UsageRecord(request_id=f"r{i}", ts=1.0, tenant="t", cache="hit", status=200, namespace="t/ns",
                               entry_id=i + 1, similarity=s, hit_score=s))
        led.flush()
        led.add_label(Label(request_id=f"r{i}", tenant="t", namespace="t/ns", source="shadow",
                            good=s > 0.93 or i % 10 == 0, entry_id=i + 1, similarity=s))
    led.close()
    data = tune.load_ledger(tmp_path / "ledger.sqlite3", "namespace")
    assert len(data) == 200 and set(data.group) == {"t/ns"}
    grid, acc = tune.acceptance(data, "as-served", None)
    m = tune.sweep(acc, np.asarray(data.label), 100)
    chosen = tune.recommend({"as-served": (grid, m)}, 0.05, "upper")
    assert chosen is not None and chosen[0].threshold >= 0.92
