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


def test_no_generated_factoid_name_is_in_the_fresh_set() -> None:
    from bench import _verifier_synth_para as P

    text = FRESH.read_text().casefold()
    names = [w for w, _ in P.WORKS] + [t for t, _ in P.MEASURED] + [e for e, _ in P.EVENTS]
    found = [n for n in names if re.search(rf"\b{re.escape(re.sub(r'^(the|a|an) ', '', n.casefold()))}\b", text)]
    assert found == []


def test_structural_rewrites_keep_the_slots() -> None:
    import random

    from bench._verifier_synth_llm import Families
    from bench._verifier_synth_para import (
        _embed_rewrite,
        _measure_rewrite,
        _process_rewrite,
        _role_rewrite,
        gerund,
    )

    rng, fam = random.Random(3), Families(False)
    for _ in range(20):
        out = _role_rewrite(rng, "Who invented the bicycle?", fam)
        assert out is not None and "bicycle" in out and re.search(r"invent(ed|or)", out)
        out = _measure_rewrite(rng, "How deep is Lake Tahoe?", fam)
        assert out is not None and "Lake Tahoe" in out and re.search(r"deep|depth", out)
        out = _process_rewrite(rng, "How do I set up a printer on Windows?", fam)
        assert out is not None and "setting up a printer on Windows" in out
        out = _embed_rewrite(rng, "What is the capital of Peru?", fam)
        assert out is not None and "what the capital of Peru is" in out
    assert [gerund(v) for v in ("write", "see", "tie", "run", "install", "be")] == [
        "writing", "seeing", "tying", "running", "installing", None,
    ]


def test_factoid_and_contrast_pairs_change_one_slot() -> None:
    import random

    from bench._verifier_synth_para import contrast_pairs, factoid_pairs

    pairs = factoid_pairs(random.Random(0), 400)
    labels = {p[2] for p in pairs}
    assert labels == {0, 1} and all(p[0] != p[1] for p in pairs)
    assert all(p[3].startswith("fact:") for p in pairs if p[2] == 0)
    source = [("How do I learn Python fast?", "What is the quickest way to learn Python?")]
    out = contrast_pairs(random.Random(1), source, 20)
    assert out and all(p[2] == 0 and p[3].startswith("contrast:") for p in out)
    assert all(source[0][0] in p[:2] or source[0][1] in p[:2] for p in out)
