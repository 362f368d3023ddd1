"""LLM-style training pairs for the learned verifier: rewrites that keep the answer, minimal edits that
change it, over real prompt shapes (private to bench/train_verifier.py).

A *prompt* comes from a pool the caller passes in (QQP train-half questions, ShareGPT first turns, the
older generator's prompts). From one prompt `x`:

- positive (label 1): `rewrite(x)`, one to four meaning-preserving steps (the opener re-said in another
  request form, synonyms, greetings and thanks, case and punctuation), often heavy enough that few words
  are shared;
- negative (label 0): `edit(x)`, one minimal change of what is asked (an intent-reversing verb, an
  antonym, a question word, the audience, the output format, a human or programming language, a qualifier
  or modifier that narrows the scope by a word or two, a number or unit, an entity, a direction, a
  negation), then reworded by `rewrite` most of the time, so that a pair's word overlap says nothing about
  its label.

Families (each opener, synonym group, contrast pair or list item, qualifier, modifier) are split by a hash
of their text: a fifth is held out. `generate(..., heldout=False)` uses only the other four fifths;
`generate(..., heldout=True)` makes pairs whose rewrite or edit uses a held-out family, to measure
generalisation to templates never trained on (bench/train_verifier.py writes them to heldout.jsonl).
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Callable, Sequence

from bench import _verifier_synth_llm_data as D

Pair = tuple[str, str, int, str]  # a, b, label, kind
HELD_OUT_FIFTH = 0  # families whose hash % 5 equals this are held out


def held_out(family: str) -> bool:
    """Is this family (its text) in the held-out fifth?"""
    return hashlib.sha256(f"synth-llm\x00{family}".encode()).digest()[0] % 5 == HELD_OUT_FIFTH


class Families:
    """The word lists of bench/_verifier_synth_llm_data.py restricted to training or held-out families."""

    def __init__(self, heldout: bool, structural: bool = True) -> None:
        self.heldout = heldout
        self.structural = structural  # the structural rewrites of bench/_verifier_synth_para.py

        def keep(items: Sequence, key: Callable[[object], str] = str) -> list:
            return [x for x in items if held_out(key(x)) == heldout]

        def train_only(items: Sequence, key: Callable[[object], str] = str) -> list:
            return [x for x in items if not held_out(key(x))]

        # For lists of items that contrast with each other, a held-out pair involves a held-out item.
        self.openers = {
            name: (train_only(forms), keep(forms))
            for name, forms in (
                ("how", D.HOW_OPENERS),
                ("what", D.WHAT_OPENERS),
                ("do", D.DO_OPENERS),
                ("should", D.SHOULD_OPENERS),
                ("why", D.WHY_OPENERS),
            )
        }
        self.prefixes = keep(D.PREFIXES) if heldout else train_only(D.PREFIXES)
        self.suffixes = keep(D.SUFFIXES) if heldout else train_only(D.SUFFIXES)
        self.synonyms = keep(D.SYNONYMS, lambda g: "|".join(g))  # type: ignore[arg-type]
        self.reversals = keep(D.REVERSALS, lambda p: "|".join(p))  # type: ignore[arg-type]
        self.antonyms = keep(D.ANTONYMS, lambda p: "|".join(p))  # type: ignore[arg-type]
        self.wh = keep(D.WH_SWAPS, lambda p: "|".join(p))  # type: ignore[arg-type]
        self.audiences = D.AUDIENCES
        self.audience_frames = keep(D.AUDIENCE_FRAMES)
        self.formats = D.FORMATS
        self.human = D.HUMAN_LANGUAGES
        self.code = D.CODE_LANGUAGES
        self.qualifiers = keep(D.QUALIFIERS)
        self.modifiers = keep(D.MODIFIERS)
        self.entities = {k: v for k, v in D.ENTITY_CLASSES.items()}
        self.units = D.UNITS

    def pick_two(self, rng: random.Random, items: list[str]) -> tuple[str, str] | None:
        """Two different items whose pair is a family of this split (held-out: at least one held-out item)."""
        for _ in range(20):
            x, y = rng.sample(items, 2)
            is_held = held_out(x) or held_out(y)
            if is_held == self.heldout:
                return x, y
        return None

    def pick_other(self, rng: random.Random, items: list[str], x: str) -> str | None:
        for _ in range(20):
            y = rng.choice(items)
            if y != x and (held_out(x) or held_out(y)) == self.heldout:
                return y
        return None


_WORD = r"(?<![\w-]){}(?![\w-])"


@functools.lru_cache(maxsize=8192)
def _word_re(word: str) -> re.Pattern[str]:
    return re.compile(_WORD.format(re.escape(word)), re.IGNORECASE)


def _sub_word(text: str, old: str, new: str) -> str | None:
    m = _word_re(old).search(text)
    if m is None:
        return None
    found = m.group(0)
    if found[:1].isupper():
        new = new[:1].upper() + new[1:]
    return text[: m.start()] + new + text[m.end() :]


def _has_word(text: str, word: str) -> bool:
    return word.casefold() in text.casefold() and _word_re(word).search(text) is not None


def _strip_end(text: str) -> tuple[str, str]:
    core = text.rstrip(" ?.!")
    return core, text[len(core) :].strip() or "?"


# ---------------------------------------------------------------- rewrites (keep the answer)

_HOW = re.compile(
    r"^(?:how (?:do|can|should|would|could) (?:i|you|we|one)|how to|what(?:'s| is) the (?:best|easiest|right) way to)\s+(.+)$",
    re.IGNORECASE,
)
_WHAT = re.compile(r"^(?:what is|what's|explain|define|describe)\s+(.+)$", re.IGNORECASE)
_DO = re.compile(
    r"^(?:please |can you |could you |would you |i need you to |i'd like you to )?"
    r"((?:write|create|give|make|list|generate|summarize|draft|suggest|recommend|translate|compose|"
    r"design|plan|outline|find|name|tell|convert|rewrite|build|implement|compare|prepare|provide)\b.+)$",
    re.IGNORECASE,
)
_SHOULD = re.compile(r"^(?:should i|is it a good idea to|would you recommend that i)\s+(.+)$", re.IGNORECASE)
_WHY = re.compile(r"^why\s+(.+)$", re.IGNORECASE)


def _lower_first(s: str) -> str:
    return s[:1].lower() + s[1:] if s[:2] != s[:2].upper() else s


def _reframe(rng: random.Random, text: str, fam: Families) -> str | None:
    core, _ = _strip_end(text.strip())
    for name, pat in (("how", _HOW), ("should", _SHOULD), ("why", _WHY), ("what", _WHAT), ("do", _DO)):
        m = pat.match(core)
        if m is None:
            continue
        train, held = fam.openers[name]
        forms = held if fam.heldout and held and rng.random() < 0.7 else train
        if not forms:
            return None
        x = _lower_first(m.group(1))
        out = rng.choice(forms).format(x=x, X=x[:1].upper() + x[1:])
        return out[:1].upper() + out[1:]
    return None


def _synonym(rng: random.Random, text: str, fam: Families) -> str | None:
    groups = [g for g in fam.synonyms if any(_has_word(text, w) for w in g)]
    if not groups:
        return None
    g = rng.choice(groups)
    old = next(w for w in g if _has_word(text, w))
    return _sub_word(text, old, rng.choice([w for w in g if w != old]))


def _frame(rng: random.Random, text: str, fam: Families) -> str | None:
    if rng.random() < 0.6 and fam.prefixes:
        p = rng.choice(fam.prefixes)
        return p + (_lower_first(text) if not p.endswith(". ") and not p.endswith("! ") else text)
    if fam.suffixes:
        return text.rstrip() + rng.choice(fam.suffixes)
    return None


def _noise(rng: random.Random, text: str, fam: Families) -> str | None:
    r = rng.random()
    if r < 0.35:
        return text.lower()
    if r < 0.7:
        return text.rstrip("?.! ")
    if r < 0.85:
        return text.rstrip("?.! ") + "??"
    return text[:1].upper() + text[1:]


def _restructure(rng: random.Random, text: str, fam: Families) -> str | None:
    from bench._verifier_synth_para import restructure  # that module builds on this one

    return restructure(rng, text, fam)


# Structural rewrites first: they read the prompt's original form (an opener re-said hides it).
Step = Callable[[random.Random, str, Families], "str | None"]
_STEPS: tuple[Step, ...] = (_restructure, _reframe, _synonym, _synonym, _frame, _noise)
_FAMILY_STEPS: tuple[Step, ...] = (_restructure, _reframe, _synonym, _synonym, _frame)  # held-out rewrites: every step is a family
# Without them: the steps (and so the random draws) that made the shipped verifier's data.
_MILD_STEPS = _STEPS[1:]
_MILD_FAMILY_STEPS = _FAMILY_STEPS[1:]


def rewrite(rng: random.Random, text: str, fam: Families, steps: int | None = None) -> tuple[str, bool]:
    """`text` reworded without changing what it asks; the flag says whether any step applied."""
    n = steps if steps is not None else rng.choice((1, 2, 2, 3, 3, 4))
    out, changed = text, False
    if fam.structural:
        steps_from = _FAMILY_STEPS if fam.heldout else _STEPS
    else:
        steps_from = _MILD_FAMILY_STEPS if fam.heldout else _MILD_STEPS
    chosen = rng.sample(range(len(steps_from)), min(n, len(steps_from)))
    for step in [steps_from[i] for i in sorted(chosen)]:  # framing and noise last
        new = step(rng, out, fam)
        if new and new != out:
            out, changed = new, True
    return out, changed


# ---------------------------------------------------------------- edits (change the answer)


def _swap_pairs(rng: random.Random, text: str, pairs: list[tuple[str, str]]) -> str | None:
    hits = [(a, b) for a, b in pairs if _has_word(text, a)] + [(b, a) for a, b in pairs if _has_word(text, b)]
    if not hits:
        return None
    old, new = rng.choice(hits)
    return _sub_word(text, old, new)


def _e_reversal(rng: random.Random, text: str, fam: Families) -> str | None:
    return _swap_pairs(rng, text, fam.reversals)


def _e_antonym(rng: random.Random, text: str, fam: Families) -> str | None:
    return _swap_pairs(rng, text, fam.antonyms)


def _e_wh(rng: random.Random, text: str, fam: Families) -> str | None:
    for a, b in rng.sample(fam.wh, len(fam.wh)):
        for s, t in ((a, b), (b, a)):
            if text.lower().startswith(s.lower() + " "):
                return t + text[len(s) :]
    return None


def _e_listed(rng: random.Random, text: str, fam: Families, items: list[str]) -> str | None:
    present = [x for x in items if _has_word(text, x)]
    if present:
        old = rng.choice(present)
        new = fam.pick_other(rng, items, old)
        return None if new is None else _sub_word(text, old, new)
    return None


def _e_audience(rng: random.Random, text: str, fam: Families) -> str | None:
    if not fam.audience_frames:
        return None
    swapped = _e_listed(rng, text, fam, fam.audiences)
    if swapped:
        return swapped
    core, end = _strip_end(text)
    frame = rng.choice(fam.audience_frames)
    two = fam.pick_two(rng, fam.audiences)
    if two is None:
        return None
    # Two audiences on the same request; the caller pairs it with the plain or other-audience form.
    return core + frame.format(a=two[0]) + end + "\x00" + core + frame.format(a=two[1]) + end


def _e_format(rng: random.Random, text: str, fam: Families) -> str | None:
    swapped = _e_listed(rng, text, fam, fam.formats)
    if swapped:
        return swapped
    two = fam.pick_two(rng, fam.formats)
    if two is None:
        return None
    core, end = _strip_end(text)
    return f"{core} {two[0]}{end}\x00{core} {two[1]}{end}"


def _e_language(rng: random.Random, text: str, fam: Families) -> str | None:
    for items in (fam.code, fam.human):
        swapped = _e_listed(rng, text, fam, items)
        if swapped:
            return swapped
    items = fam.human if rng.random() < 0.5 else fam.code
    two = fam.pick_two(rng, items)
    if two is None:
        return None
    core, end = _strip_end(text)
    word = "in" if items is fam.code or rng.random() < 0.6 else "into"
    return f"{core} {word} {two[0]}{end}\x00{core} {word} {two[1]}{end}"


def _e_qualifier(rng: random.Random, text: str, fam: Families) -> str | None:
    if not fam.qualifiers:
        return None
    core, end = _strip_end(text)
    return f"{core} {rng.choice(fam.qualifiers)}{end}"


_STOP = {"a", "an", "the", "my", "your", "our", "this", "that", "of", "to", "in", "on", "for", "with", "and", "or",
         "is", "are", "do", "does", "i", "you", "it", "me", "how", "what", "why", "can", "be", "from", "at", "by"}


def _e_modifier(rng: random.Random, text: str, fam: Families) -> str | None:
    if not fam.modifiers:
        return None
    words = text.split()
    spots = [
        i
        for i in range(1, len(words))
        if words[i - 1].lower() in ("a", "an", "the", "my", "your", "our", "all", "some", "these", "those")
        and words[i].strip("?.,!").isalpha()
        and words[i].lower().strip("?.,!") not in _STOP
    ]
    if not spots:
        return None
    i = rng.choice(spots)
    mod = rng.choice(fam.modifiers)
    art = words[i - 1]
    if art.lower() in ("a", "an"):
        words[i - 1] = ("An" if art[0].isupper() else "an") if mod[0] in "aeiou" else ("A" if art[0].isupper() else "a")
    return " ".join([*words[:i], mod, *words[i:]])


_NUM = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])")


def _e_number(rng: random.Random, text: str, fam: Families) -> str | None:
    nums = list(_NUM.finditer(text))
    if nums:
        m = rng.choice(nums)
        v = float(m.group(1))
        new = rng.choice([v + 1, v * 2, v * 10, v + 5, max(v - 1, 0), v / 2 if v > 2 else v + 3])
        s = str(int(new)) if new == int(new) else f"{new:g}"
        if s == m.group(1):
            return None
        return text[: m.start()] + s + text[m.end() :]
    for group in fam.units:
        present = [u for u in group if _has_word(text, u)]
        if present:
            old = present[0]
            return _sub_word(text, old, rng.choice([u for u in group if u != old]))
    return None


def _e_entity(rng: random.Random, text: str, fam: Families) -> str | None:
    for cls in rng.sample(list(fam.entities), len(fam.entities)):
        swapped = _e_listed(rng, text, fam, fam.entities[cls])
        if swapped:
            return swapped
    return None


_FROM_TO = re.compile(r"\bfrom ([\w .'+#-]{1,30}?) (to|into) ([\w .'+#-]{1,30}?)(?=[?.!,]|$| for| in| with| using)", re.IGNORECASE)
_X_TO_Y = re.compile(r"\b(convert|translate|migrate|move|switch|port|transfer|change) ([\w .'+#-]{1,25}?) (to|into) ([\w .'+#-]{1,25}?)(?=[?.!,]|$)", re.IGNORECASE)
_CAUSE = re.compile(r"^(does|can|will|do) ([\w '-]{2,30}?) (cause|lead to|affect|increase|reduce|predict) ([\w '-]{2,30}?)([?.!]*)$", re.IGNORECASE)


def _e_direction(rng: random.Random, text: str, fam: Families) -> str | None:
    m = _FROM_TO.search(text)
    if m:
        return text[: m.start()] + f"from {m.group(3)} {m.group(2)} {m.group(1)}" + text[m.end() :]
    m = _X_TO_Y.search(text)
    if m:
        return text[: m.start()] + f"{m.group(1)} {m.group(4)} {m.group(3)} {m.group(2)}" + text[m.end() :]
    m = _CAUSE.match(text.strip())
    if m:
        return f"{m.group(1)} {m.group(4)} {m.group(3)} {m.group(2)}{m.group(5) or '?'}"[:1].upper() + \
            f"{m.group(1)} {m.group(4)} {m.group(3)} {m.group(2)}{m.group(5) or '?'}"[1:]
    return None


_SUBJECTS = {"i", "you", "we", "they", "he", "she", "it", "one", "people", "this", "that"}
_AUX = ("is", "are", "can", "do", "does", "should", "will", "was", "did", "would", "could")


def _e_negation(rng: random.Random, text: str, fam: Families) -> str | None:
    words = text.split()
    for i, w in enumerate(words[:5]):
        if w.lower() in _AUX and i + 1 < len(words):
            # "How can you X" -> "How can you not X"; "Is it X" -> "Is it not X"; "It is X" -> "It is not X"
            at = i + 2 if i + 1 < len(words) and words[i + 1].lower() in _SUBJECTS else i + 1
            return " ".join([*words[:at], "not", *words[at:]])
    if _has_word(text, "with"):
        return _sub_word(text, "with", "without")
    if _has_word(text, "without"):
        return _sub_word(text, "without", "with")
    return None


EDITS: dict[str, Callable[[random.Random, str, Families], str | None]] = {
    "reversal": _e_reversal,
    "antonym": _e_antonym,
    "wh": _e_wh,
    "audience": _e_audience,
    "format": _e_format,
    "language": _e_language,
    "qualifier": _e_qualifier,
    "modifier": _e_modifier,
    "number": _e_number,
    "entity": _e_entity,
    "direction": _e_direction,
    "negation": _e_negation,
}
# How often each edit is tried (the generic ones apply to any prompt; these weights keep the mix broad).
EDIT_WEIGHTS = {
    "reversal": 8, "antonym": 6, "wh": 3, "audience": 2, "format": 2, "language": 2, "qualifier": 2,
    "modifier": 3, "number": 5, "entity": 8, "direction": 4, "negation": 2,
}  # fmt: skip


def edit(rng: random.Random, text: str, fam: Families, kind: str) -> tuple[str, str] | None:
    """(a, b) differing by one minimal change of kind `kind`, or None when it does not apply."""
    out = EDITS[kind](rng, text, fam)
    if not out:
        return None
    if "\x00" in out:  # the edit built both sides (two audiences, formats or languages)
        a, b = out.split("\x00")
        if rng.random() < 0.35:
            a = text  # the request with no qualifier against one with it: the scope grew
        return (a, b) if a != b else None
    return (text, out) if out != text else None


def generate(
    rng: random.Random,
    prompts: list[str],
    n: int,
    heldout: bool = False,
    positive_share: float = 0.45,
    structural: bool = True,
) -> list[Pair]:
    """`n` pairs over `prompts`, about `positive_share` of them positives. With `heldout`, every pair
    uses at least one held-out family (a rewrite step or an edit); without, none does."""
    fam = Families(heldout, structural)
    # Numbers, directions and negations have no word-list families: not part of the held-out slice.
    generic = ("number", "direction", "negation")
    kinds = [k for k, w in EDIT_WEIGHTS.items() for _ in range(w) if not (heldout and k in generic)]
    out: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    tries = positives = 0
    while len(out) < n and tries < n * 30:
        tries += 1
        x = rng.choice(prompts).strip()
        if not x or len(x) > 240:
            continue
        if positives < positive_share * (len(out) + 1):
            b, changed = rewrite(rng, x, fam)
            if not changed or _fold(b) == _fold(x):
                continue
            if rng.random() < 0.3:  # both sides reworded
                a, _ = rewrite(rng, x, fam)
            else:
                a = x
            pair: Pair = (a, b, 1, "para")
        else:
            kind = rng.choice(kinds)
            ab = edit(rng, x, fam, kind)
            if ab is None:
                continue
            a, b = ab
            r = rng.random()
            if r < 0.6:  # reworded after the edit: overlap says nothing about the label
                b, _ = rewrite(rng, b, fam, steps=rng.choice((1, 2, 3)))
            elif r < 0.75:
                a, _ = rewrite(rng, a, fam, steps=rng.choice((1, 2)))
            pair = (a, b, 0, f"edit:{kind}")
        if _fold(pair[0]) == _fold(pair[1]):
            continue
        key = (pair[0], pair[1])
        if key in seen:
            continue
        seen.add(key)
        positives += pair[2]
        out.append(pair if rng.random() < 0.5 else (pair[1], pair[0], pair[2], pair[3]))
    return out


def _fold(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text).split()).casefold()
