"""Text analysis for the hit verifier: tokens, numbers with their units, negations, entities.

Every prompt is reduced once to an `Analysis`; the guards only compare two analyses. The analysis is
deliberately shallow (regexes, a light stemmer and small word lists) because it runs on the hit path
for every candidate and must cost microseconds, not milliseconds.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cache.errors import CacheInputError

# Longer inputs are analysed on a prefix: the guards look for the words that differ in a request,
# and a megabyte prompt must not turn one lookup into a second of regex work.
MAX_ANALYSED_CHARS = 4096

_CONTRACTION_RE = re.compile(r"\b(won'?t|can'?t|cannot|shan't)\b|n't\b|'(?:s|re|ve|ll|d|m)\b", re.I)
_CONTRACTION_WORDS = {
    "wont": "will not",
    "won't": "will not",
    "cant": "can not",
    "can't": "can not",
    "cannot": "can not",
    "shan't": "shall not",
}
_SENTENCE_END_RE = re.compile(r"[.!?:;\n\"']")
# Words (with c++, c#, node.js, objective-c style names kept whole), numbers (1,000.5), symbols
# that carry meaning ($, %, ->), everything else is a separator.
_TOKEN_RE = re.compile(
    r"[^\W\d_]+(?:\+\+|#|\.(?:js|net|py))?"
    r"|\d+(?:,\d{3})*(?:\.\d+)*"
    r"|->|=>|[$€£%+*/=^<>-]",
)
_NUMBER_RE = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)*")
_ORDINAL_SUFFIX = frozenset({"st", "nd", "rd", "th"})
_SMALL = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
    "dozen": 12,
}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_ROMAN = {"ii": 2, "iii": 3, "iv": 4, "vi": 6, "vii": 7, "viii": 8, "ix": 9, "xi": 11, "xii": 12}
_STOPWORD_TEXT = (
    "a an the is are was were be been being am do does did doing have has had having i me my we our "
    "you your he she it its they them their this that these those what which who whom whose when "
    "where why how can could should would will shall may might must to of in on at by for with from "
    "about as into than then so and or but if there here some any all each every just also very "
    "really please tell give show me us let get got make way thing things one ones use using used "
)
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a prompt: its canonical form and whether it looked like a name."""

    canon: str
    capitalised: bool
    sentence_start: bool


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the guards need to know about one prompt."""

    tokens: tuple[str, ...]  # canonical forms, in order
    bag: frozenset[str]
    numbers: frozenset[str]  # canonical values: "5", "0.5", "1000", versions stay "2.2.3"
    number_counts: tuple[tuple[str, int], ...]  # each value with how often it occurs ("1" and "one" count twice)
    durations: frozenset[tuple[str, float]]  # (value, seconds) for numbers bound to a time unit
    bound_units: frozenset[tuple[str, str]]  # (value, unit) where a unit follows a number
    negations: int
    entities: frozenset[str]
    normalised: str
    prefixed: tuple[tuple[str, str, str], ...]  # (word, polarity prefix or "", rest) for words >= 4 chars


@dataclass(frozen=True, slots=True)
class Lexicon:
    """The word lists shipped in cache/data/lexicon.json, indexed for lookups."""

    synonyms: dict[str, str]
    groups: dict[str, tuple[tuple[str, str], ...]]  # word -> ((kind, group name), ...)
    negation: frozenset[str]
    units: frozenset[str]
    connectors: frozenset[str]
    numeric_connectors: frozenset[str]
    polarity_prefixes: tuple[str, ...]
    entity_words: frozenset[str]
    phrases: dict[str, str]
    phrase_re: re.Pattern[str] | None
    time_seconds: dict[str, float]

    @classmethod
    def load(cls, path: Path | None = None) -> Lexicon:
        where = str(path) if path is not None else "cache/data/lexicon.json"
        try:
            if path is None:
                text = resources.files("cache").joinpath("data/lexicon.json").read_text("utf-8")
            else:
                text = Path(path).read_text("utf-8")
            raw = json.loads(text)
            return cls._build(raw)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise CacheInputError(
                f"hit policy lexicon {where} cannot be used: {type(e).__name__}: {e}"
            ) from e

    @classmethod
    def _build(cls, raw: dict) -> Lexicon:
        synonyms = _resolve_synonyms(raw["synonyms"])

        def canon(word: str) -> str:
            return _canonical(word.lower(), synonyms)

        groups: dict[str, list[tuple[str, str]]] = {}
        for group in raw["groups"]:
            for word in _words(group["words"]):
                groups.setdefault(canon(word), []).append((group["kind"], group["name"]))
        for i, pair in enumerate(raw["antonym_pairs"]):
            for word in _words(pair):
                groups.setdefault(canon(word), []).append(("antonym", f"pair{i}"))
        entity_words = frozenset(w for w, gs in groups.items() if any(k == "entity" for k, _ in gs))
        prefixes = sorted(_words(raw["polarity_prefixes"]), key=len, reverse=True)
        phrases = {k.lower(): v for k, v in raw.get("phrases", {}).items()}
        phrase_re = (
            re.compile(
                r"(?<!\w)(?:"
                + "|".join(re.escape(k) for k in sorted(phrases, key=len, reverse=True))
                + r")(?!\w)",
                re.I,
            )
            if phrases
            else None
        )
        return cls(
            synonyms=synonyms,
            groups={w: tuple(dict.fromkeys(gs)) for w, gs in groups.items()},
            negation=frozenset(canon(w) for w in _words(raw["negation"])),
            units=frozenset(canon(w) for w in _words(raw["units"])),
            connectors=frozenset(_words(raw["direction_connectors"])),
            numeric_connectors=frozenset(_words(raw.get("numeric_connectors", ""))),
            polarity_prefixes=tuple(prefixes),
            entity_words=entity_words,
            phrases=phrases,
            phrase_re=phrase_re,
            time_seconds={canon(k): float(v) for k, v in raw.get("time_seconds", {}).items()},
        )

    def analyse(self, text: str) -> Analysis:
        return _analyse(text[:MAX_ANALYSED_CHARS], self)


def _words(value: str | list[str]) -> list[str]:
    return value.split() if isinstance(value, str) else list(value)


def _resolve_synonyms(raw: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for word, target in raw.items():
        seen = {word}
        while target in raw and target not in seen and raw[target] != target:
            seen.add(target)
            target = raw[target]
        out[word.lower()] = target.lower()
    return out


def _stem(word: str) -> str:
    """A plural stripper: enough to match 'files' with 'file', cheap enough for the hot path."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is", "os")):
        return word[:-1]
    return word


def _canonical(word: str, synonyms: dict[str, str]) -> str:
    hit = synonyms.get(word)
    if hit is not None:
        return hit
    stemmed = _stem(word)
    return synonyms.get(stemmed, stemmed)


def _expand(m: re.Match[str]) -> str:
    word = m.group(1)
    if word:
        return _CONTRACTION_WORDS[word.lower()]
    return " not" if m.group(0).lower() == "n't" else ""


def _normalise(text: str) -> str:
    return _CONTRACTION_RE.sub(_expand, text.replace("\u2019", "'").replace("\u2018", "'"))


def _word_value(words: list[str]) -> float:
    total, current = 0, 0
    for w in words:
        if w in _SMALL:
            current += _SMALL[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        else:
            total += max(current, 1) * _SCALES[w]
            current = 0
    return float(total + current)


def _analyse(text: str, lex: Lexicon) -> Analysis:
    norm = _normalise(text)
    if lex.phrase_re is not None:
        norm = lex.phrase_re.sub(lambda m: lex.phrases[m.group(0).lower()], norm)
    raw: list[str] = []
    starts = {0}
    prev_end = 0
    for m in _TOKEN_RE.finditer(norm):
        if raw and _SENTENCE_END_RE.search(norm, prev_end, m.start()):
            starts.add(len(raw))
        raw.append(m.group())
        prev_end = m.end()
    tokens: list[Token] = []
    numbers: list[tuple[int, str]] = []  # (token index, canonical value)
    word_run: list[str] = []
    i = 0
    while i < len(raw):
        piece = raw[i]
        low = piece.lower()
        if _NUMBER_RE.fullmatch(piece):
            numbers.append((len(tokens), _number_value(piece)))
            tokens.append(Token(f"#{len(numbers) - 1}", False, False))
            if i + 1 < len(raw) and raw[i + 1].lower() in _ORDINAL_SUFFIX:
                i += 1  # 10th: the value is what matters, the suffix is noise
        elif low in _SMALL or (low in _SCALES and (word_run or (tokens and tokens[-1].canon == "a"))):
            word_run.append(low)
            if i + 1 >= len(raw) or (raw[i + 1].lower() not in _SMALL and raw[i + 1].lower() not in _SCALES):
                numbers.append((len(tokens), _fmt(_word_value(word_run))))
                tokens.append(Token(f"#{len(numbers) - 1}", False, False))
                word_run = []
        elif low in _ROMAN and piece.isupper() and tokens and tokens[-1].capitalised:
            numbers.append((len(tokens), str(_ROMAN[low])))
            tokens.append(Token(f"#{len(numbers) - 1}", False, False))
        elif piece == "I" and tokens and tokens[-1].capitalised and not tokens[-1].sentence_start:
            numbers.append((len(tokens), "1"))  # World War I, Phase I
            tokens.append(Token(f"#{len(numbers) - 1}", False, False))
        else:
            cap = piece[:1].isupper() or any(ch.isupper() for ch in piece[1:]) or piece[-1:] in "+#"
            # Acronyms keep their final s: HTTPS is not the plural of HTTP.
            keep = low in STOPWORDS or (piece.isupper() and len(piece) > 1)
            form = lex.synonyms.get(low, low) if keep else _canonical(low, lex.synonyms)
            tokens.append(Token(form, cap, i in starts))
        i += 1
    return _assemble(tokens, numbers, lex, norm)


def _assemble(tokens: list[Token], numbers: list[tuple[int, str]], lex: Lexicon, norm: str) -> Analysis:
    values = [v for _, v in numbers]
    canon = [(f"#{values[int(t.canon[1:])]}" if t.canon.startswith("#") else t.canon) for t in tokens]
    bound: set[tuple[str, str]] = set()
    for pos, value in numbers:
        for nxt in canon[pos + 1 : pos + 3]:
            if nxt in lex.units:
                bound.add((value, nxt))
                break
            if nxt not in ("-", "degree") and not nxt.startswith("#"):
                break
    entities = set()
    for t in tokens:
        if t.canon in lex.entity_words or (
            t.capitalised
            and not t.sentence_start
            and len(t.canon) > 1
            and t.canon not in STOPWORDS
            and not t.canon.startswith("#")
        ):
            entities.add(t.canon)
    return Analysis(
        tokens=tuple(canon),
        bag=frozenset(canon),
        numbers=frozenset(values),
        number_counts=tuple(sorted(Counter(values).items())),
        durations=frozenset(
            (v, float(v) * lex.time_seconds[u])
            for v, u in bound
            if u in lex.time_seconds and v.count(".") <= 1
        ),
        bound_units=frozenset(bound),
        negations=sum(1 for c in canon if c in lex.negation),
        entities=frozenset(entities),
        normalised=" ".join(canon),
        prefixed=tuple(
            (w, p, w[len(p) :])
            for w in set(canon)
            if w.isalpha() and w not in STOPWORDS
            for p in (*lex.polarity_prefixes, "")
            if w.startswith(p) and len(w) - len(p) >= 4
        ),
    )


def _number_value(piece: str) -> str:
    if piece.count(".") > 1:
        return piece  # a version such as 2.2.3
    return _fmt(float(piece.replace(",", "")))


def _fmt(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)
