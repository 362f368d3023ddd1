"""The hit policy: decides whether a cached answer may be served for a new prompt.

A cosine threshold alone cannot separate paraphrases from near-misses: with all-MiniLM-L6-v2,
"enable X" / "disable X" or "5 km" / "50 km" score as high as true paraphrases. So a candidate must
clear these steps, cheapest first:

1. identical prompts (after whitespace and case folding) are accepted at once;
2. a first cosine bar (the index hands over only candidates above it);
3. the hard guards, which compare what differs between the two prompts and refuse outright:
   numbers and their units, negations and polarity prefixes (enable/disable), closed sets of
   contrasting words (formats, languages, scopes, antonyms), names, the direction of "X to Y";
4. the soft substitution guard: the same frame with one or two content words swapped lowers the
   score by `substitution_penalty` while the similarity is below `substitution_bar`;
5. the acceptance threshold on that score (per request overridable).

`Verdict.score` is the similarity in cosine units, minus the soft penalty when it applied.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import msgspec

from cache._verify_guards import (
    CONTRAST_SWITCH,
    Guard,
    direction_guard,
    entity_guard,
    make_contrast_guard,
    make_substitution_guard,
    negation_guard,
    number_guard,
)
from cache._verify_text import MAX_ANALYSED_CHARS, Analysis, Lexicon
from cache.errors import CacheInputError

__all__ = ["PRESETS", "HitPolicy", "PolicyConfig", "Verdict", "default_policy"]

_ANALYSIS_CACHE_SIZE = 2048


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


class Verdict(msgspec.Struct, frozen=True):
    """The policy's answer for one candidate; `reason` names the guard that refused, or "ok"."""

    accept: bool
    score: float
    reason: str


class PolicyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Numbers chosen from bench/cache_quality.py measurements (see the README's cache section).

    `threshold` and the bars are cosine similarities; the boolean switches turn single guards off.
    """

    threshold: float = 0.92
    first_bar: float = 0.60
    top_k: int = 3
    numbers: bool = True
    negation: bool = True
    antonyms: bool = True
    formats: bool = True
    languages: bool = True
    scopes: bool = True
    entities: bool = True
    direction: bool = True
    substitutions: bool = True
    max_substituted_words: int = 2
    substitution_penalty: float = 0.35
    substitution_bar: float = 0.92
    lexicon_path: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.first_bar <= 1.0 or not -1.0 <= self.threshold <= 1.0:
            raise CacheInputError(
                f"PolicyConfig: first_bar must be in [0, 1] and threshold in [-1, 1], "
                f"got first_bar={self.first_bar}, threshold={self.threshold}"
            )
        if self.top_k < 1:
            raise CacheInputError(f"PolicyConfig: top_k must be >= 1, got {self.top_k}")
        if self.max_substituted_words < 1 or self.substitution_penalty < 0:
            raise CacheInputError(
                "PolicyConfig: max_substituted_words must be >= 1 and substitution_penalty >= 0, got "
                f"{self.max_substituted_words} and {self.substitution_penalty}"
            )


class HitPolicy:
    """Verifies a (query, cached prompt) pair the index found similar; one instance per cache."""

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()
        self.first_bar = self.config.first_bar
        self.threshold = self.config.threshold
        self.top_k = self.config.top_k
        self._lexicon: Lexicon | None = None
        self._guards: tuple[Guard, ...] = ()
        self._substitution: Guard | None = None
        self._analyses: OrderedDict[str, Analysis] = OrderedDict()

    def _ready(self) -> Lexicon:
        # Word lists load on first use so that building a cache object stays cheap.
        if self._lexicon is None:
            path = Path(self.config.lexicon_path) if self.config.lexicon_path else None
            self._lexicon = Lexicon.load(path)
            self._guards = self._build_guards()
        return self._lexicon

    def _build_guards(self) -> tuple[Guard, ...]:
        cfg = self.config
        switches = {name: bool(getattr(cfg, name)) for name in set(CONTRAST_SWITCH.values())}
        kinds = frozenset(kind for kind, switch in CONTRAST_SWITCH.items() if switches[switch])
        chain: list[tuple[bool, Guard]] = [
            (cfg.numbers, number_guard),
            (cfg.negation, negation_guard),
            (bool(kinds), make_contrast_guard(kinds)),
            (cfg.entities, entity_guard),
            (cfg.direction, direction_guard),
        ]
        self._substitution = make_substitution_guard(cfg.max_substituted_words) if cfg.substitutions else None
        return tuple(guard for enabled, guard in chain if enabled)

    def _analyse(self, text: str, lexicon: Lexicon) -> Analysis:
        # The same query is verified against several candidates and popular entries recur, so a
        # small per-instance LRU saves re-tokenising them.
        hit = self._analyses.get(text)
        if hit is not None:
            self._analyses.move_to_end(text)
            return hit
        analysis = lexicon.analyse(text)
        self._analyses[text] = analysis
        if len(self._analyses) > _ANALYSIS_CACHE_SIZE:
            self._analyses.popitem(last=False)
        return analysis

    def verify(
        self, query: str, candidate: str, similarity: float, threshold: float | None = None
    ) -> Verdict:
        """Accept or refuse `candidate`'s answer for `query`; `threshold` overrides the default."""
        score = float(similarity)
        if query == candidate:
            return Verdict(True, 1.0, "identical")
        long = len(query) > MAX_ANALYSED_CHARS or len(candidate) > MAX_ANALYSED_CHARS
        if not long and _fold(query) == _fold(candidate):
            return Verdict(True, 1.0, "identical")
        bar = self.threshold if threshold is None else float(threshold)
        if not score >= min(self.first_bar, bar):  # NaN falls here too
            return Verdict(False, score, "below threshold")
        if long and query[MAX_ANALYSED_CHARS:] != candidate[MAX_ANALYSED_CHARS:]:
            # The guards read a bounded prefix and the encoder a shorter one: a difference past
            # them is invisible to both, so only an exact remainder may share an answer.
            return Verdict(
                False, score, f"long prompt: differs after the first {MAX_ANALYSED_CHARS} characters"
            )
        lexicon = self._ready()
        a = self._analyse(query, lexicon)
        b = self._analyse(candidate, lexicon)
        if a.normalised == b.normalised:
            return Verdict(True, max(score, bar), "identical")
        for guard in self._guards:
            reason = guard(a, b, lexicon)
            if reason is not None:
                return Verdict(False, score, reason)
        # Above substitution_bar a small word swap is a synonym more often than not (OSSChat replay).
        soft = None
        if self._substitution is not None and score < self.config.substitution_bar:
            soft = self._substitution(a, b, lexicon)
        if soft is not None:
            score -= self.config.substitution_penalty
        if score < bar:
            return Verdict(False, score, soft or "below threshold")
        return Verdict(True, score, "ok")


# Operating points measured by bench/cache_quality.py (figures in the README's cache section).
# "balanced" is the default: hit precision first on real chatbot traffic (OSSChat replay).
# "recall" serves heavily reworded paraphrases of LLM prompts, at the cost of precision on
# fine-grained intents; "strict" is for callers that can afford few hits but no wrong ones.
PRESETS: dict[str, PolicyConfig] = {
    "strict": PolicyConfig(threshold=0.96),
    "balanced": PolicyConfig(),
    "recall": PolicyConfig(threshold=0.65, substitution_bar=1.0),
}


def default_policy() -> HitPolicy:
    """The policy with the measured default configuration ("balanced")."""
    return HitPolicy(PolicyConfig())
