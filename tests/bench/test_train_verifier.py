"""The verifier trainer's data plumbing: source groups, the per-group mix, soft targets per pair order."""

from __future__ import annotations

import random

import pytest

from bench.train_verifier import _batches, mixed, parse_mix, source_group


def test_source_groups() -> None:
    assert source_group("qqp") == "qqp"
    assert source_group("llm:fact:role") == "fact"
    assert source_group("llm:measure") == "fact"
    assert source_group("llm:contrast:entity") == "contrast"
    assert source_group("llm:edit:reversal") == "llm"
    assert source_group("llm:para") == "llm"
    assert source_group("frame") == "templates"


def test_parse_mix_names_what_is_wrong() -> None:
    assert parse_mix("qqp=all, llm=26000") == {"qqp": None, "llm": 26000}
    with pytest.raises(SystemExit, match="qqq=all"):
        parse_mix("qqq=all")
    with pytest.raises(SystemExit, match="'llm'"):
        parse_mix("llm")


def test_mix_caps_each_group_and_drops_the_unnamed() -> None:
    rows = [{"src": "qqp", "i": i} for i in range(10)] + [{"src": "llm:para", "i": i} for i in range(50)]
    rows += [{"src": "frame", "i": i} for i in range(5)]
    out = mixed(rows, {"qqp": None, "llm": 7}, random.Random(0))
    groups = [source_group(r["src"]) for r in out]
    assert groups.count("qqp") == 10 and groups.count("llm") == 7 and "templates" not in groups


class _Tok:
    """Records the (first, second) texts a batch was tokenised in."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, first: list[str], second: list[str], **_: object) -> dict:
        self.seen += list(zip(first, second, strict=True))
        return {"n": len(first)}


def test_soft_targets_follow_the_order_each_pair_is_shown_in() -> None:
    rows = [{"a": f"a{i}", "b": f"b{i}", "label": i % 2, "t_ab": float(i), "t_ba": -float(i)} for i in range(40)]
    tok = _Tok()
    soft: list[float] = []
    for _, _, s in _batches(tok, rows, 8, random.Random(1)):
        assert s is not None
        soft += s
    by_text = {(r["a"], r["b"]): r["t_ab"] for r in rows} | {(r["b"], r["a"]): r["t_ba"] for r in rows}
    assert [by_text[p] for p in tok.seen] == soft
    assert any(p[0].startswith("b") for p in tok.seen) and any(p[0].startswith("a") for p in tok.seen)
    # Without teacher logits there are no soft targets.
    for _, _, s in _batches(_Tok(), [{k: r[k] for k in ("a", "b", "label")} for r in rows], 8, None):
        assert s is None
