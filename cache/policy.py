"""The hit policy: decides whether a cached answer may be served for a new prompt.

A cosine threshold alone cannot separate paraphrases from near-misses: with all-MiniLM-L6-v2,
"enable X" / "disable X" or "5 km" / "50 km" score as high as true paraphrases. So a candidate must
clear three steps, cheapest first:

1. a first cosine bar (the index hands over only candidates above it),
2. the guards, which compare what differs between the two prompts (numbers and their units,
   negations, closed sets of contrasting words, names, the direction of "X to Y"),
3. the acceptance threshold on the similarity.

Identical prompts (after whitespace and case folding) are accepted at once.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import msgspec

from cache._verify_guards import (
    CONTRAST_SWITCH,
    Guard,
    content_overlap,
    direction_guard,
    entity_guard,
    make_contrast_guard,
    make_substitution_guard,
    negation_guard,
    number_guard,
)
from cache._verify_text import Analysis, Lexicon

__all__ = ["HitPolicy", "PolicyConfig", "Verdict", "default_policy"]

_ANALYSIS_CACHE_SIZE = 2048


class Verdict(msgspec.Struct, frozen=True):
    """The policy's answer for one candidate; `reason` names the guard that refused, or "ok"."""

    accept: bool
    score: float
    reason: str


class PolicyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Numbers chosen from bench/cache_quality.py measurements (see the README's cache section)."""

    threshold: float = 0.80
    first_bar: float = 0.60
    top_k: int = 5
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
    additions: bool = False
    substitution_bar: float = 1.01
    overlap_penalty: float = 0.0
    lexicon_path: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.first_bar <= 1.0 or not -1.0 <= self.threshold <= 1.0:
            raise ValueError(
                f"PolicyConfig: first_bar must be in [0, 1] and threshold in [-1, 1], "
                f"got first_bar={self.first_bar}, threshold={self.threshold}"
            )
        if self.top_k < 1:
            raise ValueError(f"PolicyConfig: top_k must be >= 1, got {self.top_k}")


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
        self._substitution = (
            make_substitution_guard(cfg.max_substituted_words, cfg.additions) if cfg.substitutions else None
        )
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
        if query == candidate or " ".join(query.split()).casefold() == " ".join(candidate.split()).casefold():
            return Verdict(True, 1.0, "identical")
        bar = self.threshold if threshold is None else float(threshold)
        if not score >= min(self.first_bar, bar):  # NaN falls here too
            return Verdict(False, score, "below threshold")
        lexicon = self._ready()
        a = self._analyse(query, lexicon)
        b = self._analyse(candidate, lexicon)
        if a.normalised == b.normalised:
            return Verdict(True, max(score, bar), "identical")
        for guard in self._guards:
            reason = guard(a, b, lexicon)
            if reason is not None:
                return Verdict(False, score, reason)
        if self._substitution is not None and score < self.config.substitution_bar:
            reason = self._substitution(a, b, lexicon)
            if reason is not None:
                return Verdict(False, score, reason)
        if self.config.overlap_penalty:
            score -= self.config.overlap_penalty * content_overlap(a, b)
        if score < bar:
            return Verdict(False, score, "below threshold")
        return Verdict(True, score, "ok")


def default_policy() -> HitPolicy:
    """The policy with the measured default configuration."""
    return HitPolicy(PolicyConfig())
