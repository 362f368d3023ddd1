"""The verifier's generator never holds a word swap of the fresh near-miss set (issue 14): that set
measures generalisation to edits the training data did not contain, so no contrast family of
bench/_verifier_synth_llm_data.py may be exactly the change a fresh pair makes."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

from bench import _verifier_synth_llm_data as D

FRESH = Path(__file__).resolve().parents[1] / "data" / "near_misses_fresh.jsonl"
_LEAD = {"a", "an", "the", "for", "to", "in", "into", "as", "my", "our", "with"}


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'+#-]+", text.casefold())


def _norm(span: list[str]) -> str:
    while span and span[0] in _LEAD:
        span = span[1:]
    return " ".join(span)


def _changes(a: str, b: str) -> list[tuple[str, str]]:
    wa, wb = _words(a), _words(b)
    ops = difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).get_opcodes()
    return [(_norm(wa[i1:i2]), _norm(wb[j1:j2])) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


def _fresh_changes() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in FRESH.read_text().splitlines() if line.strip()]
    return [c for r in rows for c in _changes(r["a"], r["b"])]


def _contrast_pairs() -> set[frozenset[str]]:
    pairs: set[frozenset[str]] = set()
    for x, y in [*D.REVERSALS, *D.ANTONYMS]:
        pairs.add(frozenset((_norm(_words(x)), _norm(_words(y)))))
    lists = [D.AUDIENCES, D.FORMATS, D.HUMAN_LANGUAGES, D.CODE_LANGUAGES, *D.ENTITY_CLASSES.values(), *D.UNITS]
    for items in lists:
        normed = [_norm(_words(i)) for i in items]
        pairs |= {frozenset((p, q)) for p in normed for q in normed if p != q}
    return pairs


def test_the_fresh_set_is_large_and_all_negative() -> None:
    rows = [json.loads(line) for line in FRESH.read_text().splitlines() if line.strip()]
    assert len(rows) >= 200 and {r["label"] for r in rows} == {0}
    assert len({(r["a"], r["b"]) for r in rows}) == len(rows)


def test_no_contrast_family_is_a_swap_of_the_fresh_set() -> None:
    pairs = _contrast_pairs()
    clashes = sorted({(a, b) for a, b in _fresh_changes() if a and b and frozenset((a, b)) in pairs})
    assert clashes == []


def test_no_inserted_qualifier_or_modifier_is_one_of_the_fresh_set() -> None:
    added = {_norm(_words(q)) for q in [*D.QUALIFIERS, *D.MODIFIERS]}
    inserted = {x or y for x, y in _fresh_changes() if not (x and y)}
    assert sorted(inserted & added) == []
