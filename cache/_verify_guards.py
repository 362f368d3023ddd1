"""The guards: each compares two analysed prompts and names the difference that forbids a shared answer.

A guard returns None when it sees no reason to refuse, else a short human-readable reason
("number: 5 km != 50 km"). Guards look only at what differs between the two prompts, so a word that
both prompts share can never trigger one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import combinations

from cache._verify_text import STOPWORDS, Analysis, Lexicon

Guard = Callable[[Analysis, Analysis, Lexicon], "str | None"]

# A contrast group's kind decides which config switch turns it off.
CONTRAST_SWITCH = {
    "antonym": "antonyms",
    "format": "formats",
    "language": "languages",
    "scope": "scopes",
    "entity": "entities",
    "number": "numbers",
}


def _with_unit(value: str, an: Analysis) -> str:
    units = sorted(u for v, u in an.bound_units if v == value)
    return f"{value} {units[0]}" if units else value


def number_guard(a: Analysis, b: Analysis, lex: Lexicon) -> str | None:
    """Different quantities: a number replaced by another, or the same number in another unit.

    A number present on one side only is allowed through: paraphrases often spell a quantity out on
    one side ("in 12 months" / "over a year"), and the score still has to clear the threshold.
    """
    # Multisets, not sets: "number 2 in one sentence" vs "number 1 in one sentence" holds {2, 1} against
    # {1, 1}; as sets the 1 would cancel out and the change from 2 to 1 would pass unseen.
    count_a, count_b = Counter(dict(a.number_counts)), Counter(dict(b.number_counts))
    only_a = {v for v in count_a - count_b if not _same_duration(v, a, b)}
    only_b = {v for v in count_b - count_a if not _same_duration(v, b, a)}
    if only_a and only_b:
        left = ", ".join(_with_unit(v, a) for v in sorted(only_a))
        right = ", ".join(_with_unit(v, b) for v in sorted(only_b))
        return f"number: {left} != {right}"
    for value in a.numbers & b.numbers:
        units_a = {u for v, u in a.bound_units if v == value}
        units_b = {u for v, u in b.bound_units if v == value}
        if units_a and units_b and not units_a & units_b:
            return f"number: {value} {min(units_a)} != {value} {min(units_b)}"
    return None


def _same_duration(value: str, mine: Analysis, other: Analysis) -> bool:
    """True when `value` is a duration the other prompt states in another unit (within 10 %)."""
    mine_s = [s for v, s in mine.durations if v == value]
    return any(abs(s - d) <= 0.1 * max(s, d) for s in mine_s for _, d in other.durations)


def negation_guard(a: Analysis, b: Analysis, lex: Lexicon) -> str | None:
    """One prompt negated and the other not (parity of negation cues), or a polarity pair that
    differs only by a prefix: enable/disable, lock/unlock, import/export, overvalued/undervalued."""
    if a.negations % 2 != b.negations % 2:
        return "negation"
    stems_a: dict[str, tuple[str, str]] = {}
    for word, prefix, stem in a.prefixed:
        if word not in b.bag:
            stems_a.setdefault(stem, (prefix, word))
    if not stems_a:
        return None
    for word, prefix, stem in b.prefixed:
        if word in a.bag:
            continue
        other = stems_a.get(stem)
        if other is not None and other[0] != prefix:
            return f"negation: {other[1]} != {word}"
    return None


def make_contrast_guard(enabled_kinds: frozenset[str]) -> Guard:
    """A word swapped for another of the same closed set: json/yaml, summer/winter, min/max, French/German."""

    def contrast_guard(a: Analysis, b: Analysis, lex: Lexicon) -> str | None:
        groups_b: dict[tuple[str, str], str] = {}
        for w in b.bag - a.bag:
            for group in lex.groups.get(w, ()):
                groups_b.setdefault(group, w)
        if not groups_b:
            return None
        for w in sorted(a.bag - b.bag):
            for group in lex.groups.get(w, ()):
                other = groups_b.get(group)
                if other is not None and group[0] in enabled_kinds:
                    return f"{group[0]}: {w} != {other}"
        return None

    return contrast_guard


def same_root(x: str, y: str) -> bool:
    """utilize/utilized, India/Indian, sleep/sleeping: one word with another ending, not two words."""
    if x == y:
        return True
    n = 0
    for cx, cy in zip(x, y, strict=False):
        if cx != cy:
            break
        n += 1
    return n >= 4 and len(x) - n <= 3 and len(y) - n <= 3


def _unmatched(words: set[str] | frozenset[str], other: frozenset[str]) -> set[str]:
    return {w for w in words if not any(same_root(w, o) for o in other)}


def entity_guard(a: Analysis, b: Analysis, lex: Lexicon) -> str | None:
    """A name on each side that the other lacks: Austria / Australia, New Jersey / New York."""
    only_a = sorted(_unmatched({e for e in a.entities if e not in b.bag}, b.bag))
    only_b = sorted(_unmatched({e for e in b.entities if e not in a.bag}, a.bag))
    if only_a and only_b:
        return f"entity: {' '.join(only_a[:3])} != {' '.join(only_b[:3])}"
    return None


def make_substitution_guard(max_words: int) -> Guard:
    """The same frame with one or two content words swapped ("replace a bike chain" / "... tire").

    Paraphrases reword much more than that; a small swap that no synonym or word-ending explains
    changes what is asked more often than not. It is a soft guard: the policy lowers the score
    instead of refusing outright, so a swap at a very high similarity (used / utilised) can pass.
    """

    def substitution_guard(a: Analysis, b: Analysis, lex: Lexicon) -> str | None:
        only_a = {w for w in a.bag - b.bag if w not in STOPWORDS and not w.startswith("#")}
        only_b = {w for w in b.bag - a.bag if w not in STOPWORDS and not w.startswith("#")}
        if len(only_a) > max_words or len(only_b) > max_words:
            return None
        only_a, only_b = _unmatched(only_a, b.bag), _unmatched(only_b, a.bag)
        if not only_a or not only_b:
            return None
        if not any(w not in STOPWORDS and not w.startswith("#") for w in a.bag & b.bag):
            return None
        return f"substitution: {' '.join(sorted(only_a))} != {' '.join(sorted(only_b))}"

    return substitution_guard


def direction_guard(a: Analysis, b: Analysis, lex: Lexicon) -> str | None:
    """Two shared terms whose order flips across a connector in both prompts: "X to Y" / "Y to X"."""
    pos_a = _single_positions(a.tokens)
    pos_b = _single_positions(b.tokens)
    shared = [t for t in pos_a if t in pos_b and (t not in STOPWORDS or t.startswith("#"))]
    if len(shared) < 2 or len(shared) > 40:
        return None
    shared.sort(key=pos_a.__getitem__)
    for x, y in combinations(shared, 2):
        bx, by = pos_b[x], pos_b[y]
        if bx < by:
            continue
        if (
            _same_group(x, y, lex) and _linked(a.tokens, pos_a[x], pos_a[y]) and _linked(b.tokens, by, bx)
        ):  # roles swapped: "women prefer men" / "men prefer women", not "French and German"
            return f"direction: {x} ... {y} != {y} ... {x}"
        # Between two numbers "by", "of", "minus" and operators are directional too: 100 / 4 != 4 / 100.
        links = lex.numeric_connectors if x.startswith("#") and y.startswith("#") else lex.connectors
        if _has_connector(a.tokens, pos_a[x], pos_a[y], links, pos_a) and _has_connector(
            b.tokens, by, bx, links, pos_b
        ):
            return f"direction: {x.lstrip('#')} -> {y.lstrip('#')} != {y.lstrip('#')} -> {x.lstrip('#')}"
    return None


_COORDINATION = frozenset({"and", "or", "vs", "versus", "between", "nor", "both", "either"})


def _linked(tokens: tuple[str, ...], start: int, stop: int) -> bool:
    """Some word other than a coordination joins the two terms: a verb or a relation, not "and"."""
    gap = tokens[start + 1 : stop]
    return not any(t in _COORDINATION for t in gap) and any(t not in STOPWORDS for t in gap)


def _same_group(x: str, y: str, lex: Lexicon) -> bool:
    groups_x = lex.groups.get(x, ())
    return any(g in groups_x for g in lex.groups.get(y, ()))


def _single_positions(tokens: tuple[str, ...]) -> dict[str, int]:
    seen: dict[str, int] = {}
    repeated: set[str] = set()
    for i, t in enumerate(tokens):
        if t in seen:
            repeated.add(t)
        seen[t] = i
    return {t: i for t, i in seen.items() if t not in repeated}


def _has_connector(
    tokens: tuple[str, ...], start: int, stop: int, links: frozenset[str], singles: dict[str, int]
) -> bool:
    """A connector that introduces the second term ("to [my] laptop", "to [Python] 3"), not an
    infinitive's "to" ("acceptable to steal food"); function words and repeated words may sit between."""
    for k in range(stop - 1, start, -1):
        if tokens[k] in links:
            return True
        if tokens[k] not in STOPWORDS and tokens[k] in singles:
            return False
    return False
