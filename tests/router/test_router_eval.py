"""`thrifty bench router --train FILE… --test FILE…` end to end on files of the shared RouterBench format
that it has never seen: the real encoder, the routing cross-validation, the curves, the JSON and the PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import router_eval

# 'small' answers the cooking questions right and the tax questions wrong; 'big' answers all of them
# right at 20x the price: a router that reads the prompt reaches 'big's accuracy at about half its cost.
COOKING = ["How long should I boil an egg for a soft yolk?", "What temperature roasts a chicken best?",
           "How do I keep pasta from sticking together?", "Why does bread dough need to rise twice?",
           "How much salt goes into a pot of rice?", "What is the best way to caramelise onions?",
           "How do I make a roux for gravy?", "Should I rest a steak after grilling it?",
           "How can I tell when pancakes are ready to flip?", "What oil is best for deep frying potatoes?"]
TAX = ["How do I file my quarterly estimated income tax?", "Can I deduct my home office on my tax return?",
       "What is the capital gains tax rate on stocks held a year?", "How are stock options taxed at exercise?",
       "When is the deadline to file a federal tax extension?", "Do I pay tax on a gift from my parents?",
       "How is self-employment tax calculated?", "Can I amend last year's tax return?",
       "Are medical expenses tax deductible?", "How do I report cryptocurrency gains for tax?"]


def _write(path: Path, prompts: list[tuple[str, bool]]) -> str:
    with path.open("w", encoding="utf-8") as fh:
        for i, (prompt, small_right) in enumerate(prompts):
            fh.write(json.dumps({"id": i, "prompt": prompt, "task": "qa",
                                 "correct": {"small": int(small_right), "big": 1},
                                 "cost_usd": {"small": 0.0001, "big": 0.002}}) + "\n")
    return str(path)


def test_bench_router_on_files_it_has_never_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_EMBED_CACHE", str(tmp_path / "emb"))
    train = _write(tmp_path / "train.jsonl", [(p, True) for p in COOKING[:6]] + [(p, False) for p in TAX[:6]]
                   + [(p + " Please be brief.", True) for p in COOKING[:6]] + [(p + " Please be brief.", False) for p in TAX[:6]])
    test = _write(tmp_path / "test.jsonl", [(p, True) for p in COOKING[6:]] + [(p, False) for p in TAX[6:]])
    (result,) = router_eval.main(["--train", train, "--test", test, "--out", str(tmp_path / "out"),
                                  "--name", "toy", "--cv-seeds", "2"])
    saved = json.loads((tmp_path / "out" / "toy.json").read_text())
    assert (tmp_path / "out" / "toy.png").stat().st_size > 10_000
    assert saved["train_rows"] == 24 and saved["test_rows"] == 8 and saved["best_single"] == "big"
    # every candidate of both families was cross-validated, and the winner is the one shipped
    assert {c["family"] for c in saved["cv"]} == {"group_logistic", "knn"}
    winner = min(saved["cv"], key=lambda c: c["criterion"])
    assert saved["shipped"] == f"{winner['family']}/lambda"
    shipped = saved["routers"][saved["shipped"]]
    # all of 'big's accuracy for the price of the tax half (+ 'small' on cooking): 0.5·1 + 0.5·0.05
    assert shipped["cost_share_at_100"] == pytest.approx(0.525, abs=0.01)
    assert saved["single_models_above_router_curve"] == []
    assert result["shipped"] == saved["shipped"]
