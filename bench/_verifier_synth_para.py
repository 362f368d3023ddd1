"""Heavier rewordings for the verifier's training pairs (private to bench/train_verifier.py).

The rewrites of bench/_verifier_synth_llm.py re-say a request's opener, swap synonyms and add greetings:
real LLM rewordings go further and change a question's *structure* ("Who wrote X?" / "Which author is
behind X?", "How tall is X?" / "What is the height of X?", "How do I back up X?" / "What are the steps
for backing up X?"). This module adds:

- `restructure`: one structural rewrite of a prompt (a rewrite step of `_verifier_synth_llm.rewrite`):
  who-did-it questions said through the doer's role, measure questions through the measured noun, "when"
  through "what year", a wh-question embedded in a request ("Tell me what X is."), a how-to through a
  nominalised process, an entity with its redundant class word ("the city of Paris");
- `factoid_pairs`: generated factoid questions (works and their makers, things and their measures, places
  and their distances) asked in two structural forms: positives keep every slot, negatives change one
  (another work, another role, another measure, another endpoint), both sides reworded, so that only the
  slot tells the label;
- `contrast_pairs`: hard negatives from real paraphrase pairs (QQP train-half positives): one side of a
  pair that humans judged the same question gets a minimal edit (`_verifier_synth_llm.edit`), so the
  model must look past a heavy rewording to the detail that changed.

Every form is a family: a fifth of them (by a hash of the template) is held out from training and used
only for the held-out evaluation pairs, like the families of `_verifier_synth_llm`. The works, places
and things below were written for this file; none is taken from an evaluation set.
"""

from __future__ import annotations

import random
import re

from bench._verifier_synth_llm import (
    EDIT_WEIGHTS,
    Families,
    Pair,
    _fold,
    _has_word,
    _word_re,
    edit,
    held_out,
    rewrite,
)

# fmt: off
# (past tense, past participle, role noun): "Who wrote X?" == "Who is the author of X?".
ROLES = [
    ("wrote", "written", "author"), ("painted", "painted", "painter"), ("directed", "directed", "director"),
    ("invented", "invented", "inventor"), ("founded", "founded", "founder"), ("composed", "composed", "composer"),
    ("designed", "designed", "designer"), ("created", "created", "creator"), ("discovered", "discovered", "discoverer"),
    ("developed", "developed", "developer"), ("built", "built", "builder"), ("produced", "produced", "producer"),
    ("illustrated", "illustrated", "illustrator"), ("sculpted", "sculpted", "sculptor"), ("sang", "sung", "singer"),
    ("translated", "translated", "translator"), ("narrated", "narrated", "narrator"), ("edited", "edited", "editor"),
]
ROLE_FORMS = [
    "Who {verb} {x}?", "Who is the {role} of {x}?", "Which {role} {verb} {x}?", "Who was the {role} of {x}?",
    "Name the {role} of {x}.", "{X} was {pp} by whom?", "Tell me who {verb} {x}.", "Who's the {role} behind {x}?",
    "I'd like to know who {verb} {x}.", "By whom was {x} {pp}?", "Do you know who {verb} {x}?",
    "Identify the {role} of {x}.", "Who was {x} {pp} by?", "Which person {verb} {x}?", "{X}: who {verb} it?",
    "Can you tell me who {verb} {x}?", "Who was the person that {verb} {x}?",
]
# (adjective, noun): "How tall is X?" == "What is the height of X?".
MEASURES = [
    ("tall", "height"), ("high", "height"), ("old", "age"), ("long", "length"), ("big", "size"),
    ("heavy", "weight"), ("deep", "depth"), ("wide", "width"), ("fast", "top speed"), ("hot", "temperature"),
    ("bright", "brightness"), ("thick", "thickness"), ("loud", "loudness"), ("expensive", "price"),
]
MEASURE_FORMS = [
    "How {adj} is {x}?", "What is the {noun} of {x}?", "What's the {noun} of {x}?", "What is {x}'s {noun}?",
    "Tell me the {noun} of {x}.", "Do you know how {adj} {x} is?", "I'd like to know the {noun} of {x}.",
    "How {adj} would you say {x} is?", "What {noun} is {x}?", "Can you tell me how {adj} {x} is?",
    "{X} - how {adj} is it?", "Give me the {noun} of {x}.", "How {adj} is {x} exactly?", "Find the {noun} of {x}.",
]
DISTANCE_FORMS = [
    "How far is {a} from {b}?", "What is the distance between {a} and {b}?", "What's the distance from {a} to {b}?",
    "How far away is {a} from {b}?", "How far apart are {a} and {b}?", "Tell me the distance from {a} to {b}.",
    "How much distance is there between {a} and {b}?", "What distance separates {a} and {b}?",
    "Do you know how far {a} is from {b}?", "Distance between {a} and {b}?", "How far do I travel from {a} to {b}?",
]
WHEN_OPENERS = ["When did", "In what year did", "What year did", "In which year did", "At what date did"]
WHEN_WAS_OPENERS = ["When was", "In what year was", "What year was", "In which year was"]
# A wh-question embedded in a request: "What is X?" == "Tell me what X is."
EMBED_FRAMES = [
    "Tell me {q}.", "Do you know {q}?", "I'm curious {q}.", "Can you tell me {q}?", "I want to know {q}.",
    "Could you let me know {q}?", "I'd like to find out {q}.", "Please explain {q}.", "I wonder {q}.",
    "Any idea {q}?", "Help me understand {q}.", "Let me know {q}, please.",
]
# A how-to said as a process: "How do I back up X?" == "What are the steps for backing up X?"
PROCESS_FORMS = [
    "What are the steps for {ving}?", "What's the process for {ving}?", "What is involved in {ving}?",
    "Give me instructions for {ving}.", "Steps for {ving}?", "I need a guide to {ving}.",
    "Explain the procedure for {ving}.", "What does {ving} involve?", "Walk me through {ving}.",
    "Instructions for {ving}, please.", "What's the method for {ving}?", "Tips for {ving}?",
]
# Redundant class words: "Paris" == "the city of Paris".
CLASS_WORDS = {
    "city": ["the city of {e}", "{e} (the city)", "the city {e}"],
    "country": ["the country of {e}", "the nation of {e}", "{e}, the country,"],
    "company": ["the company {e}", "{e} (the company)", "the firm {e}"],
}
CODE_CLASS_WORDS = ["the {e} programming language", "the {e} language", "{e} (the programming language)"]

# Works and their makers (one role each), things with measures, places for distances: written here.
WORKS = [
    ("Moby-Dick", "wrote"), ("War and Peace", "wrote"), ("Middlemarch", "wrote"), ("Don Quixote", "wrote"),
    ("Beowulf", "wrote"), ("The Odyssey", "wrote"), ("Frankenstein", "wrote"), ("Dracula", "wrote"),
    ("Jane Eyre", "wrote"), ("The Hobbit", "wrote"), ("Ulysses", "wrote"), ("Walden", "wrote"),
    ("The Raven", "wrote"), ("Brave New World", "wrote"), ("The Catcher in the Rye", "wrote"),
    ("Crime and Punishment", "wrote"), ("The Divine Comedy", "wrote"), ("Wuthering Heights", "wrote"),
    ("The Starry Night", "painted"), ("The Last Supper", "painted"), ("Guernica", "painted"),
    ("The Scream", "painted"), ("The Night Watch", "painted"), ("Girl with a Pearl Earring", "painted"),
    ("The Birth of Venus", "painted"), ("American Gothic", "painted"), ("The Persistence of Memory", "painted"),
    ("Jaws", "directed"), ("Psycho", "directed"), ("Vertigo", "directed"), ("Citizen Kane", "directed"),
    ("The Godfather", "directed"), ("Pulp Fiction", "directed"), ("Inception", "directed"), ("Casablanca", "directed"),
    ("the telephone", "invented"), ("the light bulb", "invented"), ("the printing press", "invented"),
    ("the steam engine", "invented"), ("the telescope", "invented"), ("the radio", "invented"),
    ("the World Wide Web", "invented"), ("the airplane", "invented"), ("dynamite", "invented"),
    ("Wikipedia", "founded"), ("the Red Cross", "founded"), ("Harvard University", "founded"),
    ("the Boy Scouts", "founded"), ("the Olympic Games", "founded"),
    ("The Four Seasons", "composed"), ("the Moonlight Sonata", "composed"), ("The Magic Flute", "composed"),
    ("Swan Lake", "composed"), ("The Nutcracker", "composed"), ("Bolero", "composed"),
    ("the Eiffel Tower", "designed"), ("the Sydney Opera House", "designed"), ("Fallingwater", "designed"),
    ("the Statue of Liberty", "designed"), ("the Guggenheim Museum", "designed"),
    ("penicillin", "discovered"), ("radium", "discovered"), ("the electron", "discovered"), ("X-rays", "discovered"),
    ("Linux", "created"), ("the Python language", "created"), ("Mickey Mouse", "created"), ("Sherlock Holmes", "created"),
    ("the Colosseum", "built"), ("the Taj Mahal", "built"), ("Hadrian's Wall", "built"),
]
MEASURED = [
    ("Mount Kilimanjaro", ("tall", "high", "old", "big")), ("the Burj Khalifa", ("tall", "high", "old", "heavy")),
    ("the Nile", ("long", "wide", "deep", "old")), ("Lake Baikal", ("deep", "wide", "old", "big")),
    ("a giraffe", ("tall", "heavy", "fast", "old")), ("an African elephant", ("tall", "heavy", "big", "old", "loud")),
    ("the Golden Gate Bridge", ("long", "tall", "old", "heavy", "wide")), ("the Mariana Trench", ("deep", "long", "wide", "old")),
    ("a cheetah", ("fast", "heavy", "long", "tall")), ("Jupiter", ("big", "heavy", "hot", "old", "bright")),
    ("the Sahara", ("big", "hot", "old", "wide")), ("a Boeing 747", ("long", "heavy", "fast", "tall", "loud", "expensive")),
    ("the Great Pyramid of Giza", ("tall", "old", "heavy", "wide")), ("the Amazon rainforest", ("big", "old", "wide")),
    ("Venus", ("hot", "big", "bright", "old")), ("a hummingbird", ("fast", "heavy", "big", "long")),
    ("the Panama Canal", ("long", "deep", "wide", "old", "expensive")), ("Big Ben", ("tall", "old", "heavy", "loud")),
    ("the Dead Sea", ("deep", "long", "wide", "old")), ("a grand piano", ("heavy", "long", "wide", "expensive", "loud")),
    ("the Sun's core", ("hot", "big", "old", "bright")), ("a sperm whale", ("long", "heavy", "big", "fast", "loud", "deep")),
    ("the Channel Tunnel", ("long", "deep", "old", "wide", "expensive")), ("the Leaning Tower of Pisa", ("tall", "old", "heavy")),
]
PLACES = [
    "Paris", "Berlin", "Madrid", "Rome", "Tokyo", "Osaka", "Sydney", "Perth", "Toronto", "Chicago", "Boston",
    "Seattle", "Miami", "Vienna", "Prague", "Lisbon", "Dublin", "Oslo", "Cairo", "Lima", "Seoul", "Denver",
    "Mars", "the Moon", "Venus", "Jupiter", "Los Angeles", "San Francisco", "New York", "Montreal", "Athens",
]
EVENTS = [
    ("the Byzantine Empire", "fall"), ("the Roman Empire", "fall"), ("the Industrial Revolution", "begin"),
    ("the Titanic", "sink"), ("the Great Fire of London", "start"), ("the Cold War", "end"),
    ("the first Moon landing", "happen"), ("the Black Death", "reach Europe"), ("the Wright brothers", "first fly"),
    ("the Gold Rush", "begin"), ("World War I", "end"), ("the Renaissance", "begin"),
]
EVENT_SWAPS = {"fall": "rise", "begin": "end", "end": "begin", "start": "end", "sink": "launch", "happen": "end",
               "reach Europe": "leave Europe", "first fly": "stop flying", "rise": "fall"}
# fmt: on

_COPULA = re.compile(r"^(what|who|where|which [\w-]+|how [\w-]+) (is|are|was|were) (.+?)[?.!]*$", re.IGNORECASE)
_WH_VERB = re.compile(r"^(who|what) ([a-z]+s|[a-z]+ed|wrote|made|built|sang|won|ran) (.+?)[?.!]*$", re.IGNORECASE)
_HOWTO = re.compile(
    r"^(?:how (?:do|can|should) (?:i|you|we|one)|how to)\s+([a-z]+)\b(.*?)[?.!]*$", re.IGNORECASE
)
_WHEN = re.compile(r"^(when did|in what year did|what year did|in which year did)\s+(.+?)[?.!]*$", re.IGNORECASE)
_WHEN_WAS = re.compile(r"^(when was|in what year was|what year was|in which year was)\s+(.+?)[?.!]*$", re.IGNORECASE)
_AUX = {"is", "are", "was", "were", "do", "does", "did", "can", "could", "should", "would", "will", "has", "have",
        "had", "may", "might", "must", "shall"}  # fmt: skip
_NO_GERUND = {"be", "get"} | _AUX


def _forms(fam: Families, forms: list[str]) -> list[str]:
    """The forms of this split: training families only, or (held out) the held-out ones first."""
    held = [f for f in forms if held_out(f)]
    train = [f for f in forms if not held_out(f)]
    if fam.heldout:
        return held or train
    return train


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _fill(form: str, **kw: str) -> str:
    x = kw.get("x")
    if x is not None:
        kw["X"] = _cap(x)
    return _cap(form.format(**kw))


def gerund(verb: str) -> str | None:
    v = verb.lower()
    if v in _NO_GERUND or not v.isalpha() or len(v) < 2:
        return None
    if v.endswith("ie"):
        return v[:-2] + "ying"
    if v.endswith("e") and not v.endswith(("ee", "ye", "oe")):
        return v[:-1] + "ing"
    if v in {"set", "get", "run", "stop", "put", "cut", "plan", "ship", "drop", "log", "sit", "swim", "shop",
             "begin", "chat", "map", "tag", "skip", "wrap", "grab", "scan"}:  # fmt: skip
        return v + v[-1] + "ing"
    return v + "ing"


def _role_rewrite(rng: random.Random, text: str, fam: Families) -> str | None:
    core = text.strip().rstrip("?.! ")
    for verb, pp, role in ROLES:
        m = re.match(rf"^who {verb} (.+)$", core, re.IGNORECASE)
        if m:
            x = m.group(1)
            return _fill(rng.choice(_forms(fam, ROLE_FORMS)), verb=verb, pp=pp, role=role, x=x)
    return None


def _measure_rewrite(rng: random.Random, text: str, fam: Families) -> str | None:
    core = text.strip().rstrip("?.! ")
    m = re.match(r"^how ([a-z]+) (?:is|are) (.+)$", core, re.IGNORECASE)
    if m:
        adj, x = m.group(1).lower(), m.group(2)
        for a, noun in MEASURES:
            if a == adj:
                return _fill(rng.choice(_forms(fam, MEASURE_FORMS)), adj=a, noun=noun, x=x)
    m = re.match(r"^how far (?:away )?is (.+?) from (.+)$", core, re.IGNORECASE)
    if m:
        return _fill(rng.choice(_forms(fam, DISTANCE_FORMS)), a=m.group(1), b=m.group(2))
    return None


def _when_rewrite(rng: random.Random, text: str, fam: Families) -> str | None:
    core = text.strip().rstrip("?.! ")
    for pat, openers in ((_WHEN, WHEN_OPENERS), (_WHEN_WAS, WHEN_WAS_OPENERS)):
        m = pat.match(core)
        if m:
            others = [o for o in _forms(fam, openers) if o.lower() != m.group(1).lower()]
            if others:
                return f"{rng.choice(others)} {m.group(2)}?"
    return None


def _embed_rewrite(rng: random.Random, text: str, fam: Families) -> str | None:
    core = text.strip().rstrip("?.! ")
    m = _COPULA.match(core)
    if m and len(core.split()) <= 16:
        wh, aux, rest = m.group(1), m.group(2), m.group(3)
        q = f"{wh.lower()} {rest} {aux}"
    else:
        m = _WH_VERB.match(core)
        if not m or m.group(2).lower() in _AUX:
            return None
        q = f"{m.group(1).lower()} {m.group(2)} {m.group(3)}"
    return _cap(rng.choice(_forms(fam, EMBED_FRAMES)).format(q=q))


def _process_rewrite(rng: random.Random, text: str, fam: Families) -> str | None:
    m = _HOWTO.match(text.strip())
    if not m:
        return None
    ving = gerund(m.group(1))
    if ving is None:
        return None
    return _cap(rng.choice(_forms(fam, PROCESS_FORMS)).format(ving=f"{ving}{m.group(2)}"))


def _class_word_rewrite(rng: random.Random, text: str, fam: Families) -> str | None:
    options: list[tuple[str, list[str]]] = []
    for cls, words in CLASS_WORDS.items():
        options += [(e, words) for e in fam.entities.get(cls, []) if _has_word(text, e)]
    options += [(e, CODE_CLASS_WORDS) for e in fam.code if len(e) > 2 and _has_word(text, e)]
    if not options:
        return None
    e, words = rng.choice(options)
    if re.search(rf"\bthe (?:city|country|nation|company|firm) (?:of )?{re.escape(e)}\b", text, re.IGNORECASE):
        return None
    m = _word_re(e).search(text)
    if m is None:
        return None
    phrase = rng.choice(_forms(fam, words)).format(e=m.group(0))
    if m.start() == 0:
        phrase = _cap(phrase)
    return text[: m.start()] + phrase + text[m.end() :]


_STEPS = (_role_rewrite, _measure_rewrite, _when_rewrite, _embed_rewrite, _process_rewrite, _class_word_rewrite)


def restructure(rng: random.Random, text: str, fam: Families) -> str | None:
    """One structural rewrite that keeps what `text` asks, or None when none applies."""
    for step in rng.sample(_STEPS, len(_STEPS)):
        out = step(rng, text, fam)
        if out and _fold(out) != _fold(text):
            return out
    return None


# ---------------------------------------------------------------- factoid pairs (slot-level contrasts)


def _role_question(rng: random.Random, fam: Families, work: str, verb: str) -> str:
    _, pp, role = next(r for r in ROLES if r[0] == verb)
    return _fill(rng.choice(_forms(fam, ROLE_FORMS)), verb=verb, pp=pp, role=role, x=work)


def _measure_question(rng: random.Random, fam: Families, thing: str, adj: str) -> str:
    noun = dict(MEASURES)[adj]
    return _fill(rng.choice(_forms(fam, MEASURE_FORMS)), adj=adj, noun=noun, x=thing)


def _distance_question(rng: random.Random, fam: Families, a: str, b: str) -> str:
    return _fill(rng.choice(_forms(fam, DISTANCE_FORMS)), a=a, b=b)


def _when_question(rng: random.Random, fam: Families, subject: str, verb: str) -> str:
    return f"{rng.choice(_forms(fam, WHEN_OPENERS))} {subject} {verb}?"


def _factoid(rng: random.Random, fam: Families, positive: bool) -> tuple[str, str, str] | None:
    kind = rng.choice(("role", "role", "measure", "measure", "distance", "when"))
    if kind == "role":
        work, verb = rng.choice(WORKS)
        a = _role_question(rng, fam, work, verb)
        if positive:
            return a, _role_question(rng, fam, work, verb), "role"
        if rng.random() < 0.5:  # another work with the same kind of maker
            other = rng.choice([w for w, v in WORKS if v == verb and w != work])
            return a, _role_question(rng, fam, other, verb), "fact:entity"
        verb2 = rng.choice([r[0] for r in ROLES if r[0] != verb])  # another role: a different person
        return a, _role_question(rng, fam, work, verb2), "fact:role"
    if kind == "measure":
        thing, adjs = rng.choice(MEASURED)
        adj = rng.choice(adjs)
        a = _measure_question(rng, fam, thing, adj)
        if positive:
            return a, _measure_question(rng, fam, thing, adj), "measure"
        if rng.random() < 0.5:
            nouns = dict(MEASURES)
            adj2 = rng.choice([x for x in adjs if nouns[x] != nouns[adj]] or [adj])
            if nouns[adj2] == nouns[adj]:
                return None
            return a, _measure_question(rng, fam, thing, adj2), "fact:measure"
        other = rng.choice([t for t, ads in MEASURED if adj in ads and t != thing] or [thing])
        return (a, _measure_question(rng, fam, other, adj), "fact:entity") if other != thing else None
    if kind == "distance":
        x, y = rng.sample(PLACES, 2)
        a = _distance_question(rng, fam, x, y)
        if positive:
            return a, _distance_question(rng, fam, x, y), "distance"
        z = rng.choice([p for p in PLACES if p not in (x, y)])
        return a, (_distance_question(rng, fam, x, z) if rng.random() < 0.5 else _distance_question(rng, fam, z, y)), "fact:entity"
    subject, verb = rng.choice(EVENTS)
    a = _when_question(rng, fam, subject, verb)
    if positive:
        return a, _when_question(rng, fam, subject, verb), "when"
    if rng.random() < 0.5:
        return a, _when_question(rng, fam, subject, EVENT_SWAPS[verb]), "fact:reversal"
    other, verb2 = rng.choice([e for e in EVENTS if e[0] != subject])
    return a, _when_question(rng, fam, other, verb), "fact:entity"


def factoid_pairs(rng: random.Random, n: int, heldout: bool = False, positive_share: float = 0.5) -> list[Pair]:
    """`n` factoid question pairs: positives ask the same slots in two forms, negatives change one slot."""
    fam = Families(heldout)
    out: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    tries = 0
    while len(out) < n and tries < n * 20:
        tries += 1
        positive = rng.random() < positive_share
        made = _factoid(rng, fam, positive)
        if made is None:
            continue
        a, b, kind = made
        if positive and _fold(a) == _fold(b):
            continue
        if rng.random() < 0.3:
            b, _ = rewrite(rng, b, fam, steps=1)
        if (a, b) in seen or _fold(a) == _fold(b):
            continue
        seen.add((a, b))
        out.append((a, b, int(positive), kind) if rng.random() < 0.5 else (b, a, int(positive), kind))
    return out


# ---------------------------------------------------------------- contrasts over real paraphrase pairs


def contrast_pairs(rng: random.Random, positives: list[tuple[str, str]], n: int) -> list[Pair]:
    """Hard negatives from human-judged paraphrase pairs (a, b): (a, edit(b)). `positives` come from a
    training split only; the edit families are the training families."""
    fam = Families(False)
    kinds = [k for k, w in EDIT_WEIGHTS.items() for _ in range(w)]
    out: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    tries = 0
    while len(out) < n and tries < n * 30:
        tries += 1
        a, b = rng.choice(positives)
        if rng.random() < 0.5:
            a, b = b, a
        kind = rng.choice(kinds)
        ab = edit(rng, b, fam, kind)
        if ab is None:
            continue
        b0, b1 = ab
        if _fold(b0) != _fold(b):  # the edit built both sides: keep only one-sided changes
            continue
        if (a, b1) in seen or _fold(a) == _fold(b1):
            continue
        seen.add((a, b1))
        out.append((a, b1, 0, f"contrast:{kind}") if rng.random() < 0.5 else (b1, a, 0, f"contrast:{kind}"))
    return out
