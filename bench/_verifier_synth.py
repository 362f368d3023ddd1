"""Synthetic training pairs for the learned verifier (private to bench/train_verifier.py).

Every pair is generated from templates written here, never from the evaluation files
(tests/data/near_misses.jsonl, llm_paraphrases.jsonl, osschat_clusters.json, QQP's held-out half).
An *intent* is a list of surface forms of one request with slots; two forms of the same intent with
the same slot values are a paraphrase (label 1). Changing a slot value, the intent, or mutating one
prompt (number, negation, antonym, direction, format, language, scope) gives a near-miss (label 0).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from bench._verifier_synth_data import (
    ANTONYMS,
    ASPECT_FRAMES,
    ASPECTS,
    CITIES,
    CODE_TASKS,
    CONTRACTIONS,
    COUNTRIES,
    COUNTRY_INTENTS,
    DISHES,
    ETHIC_FRAMES,
    ETHICS,
    FOOD_INTENTS,
    FOODS,
    FORMATS,
    HUMAN_LANGS,
    HYPO_FRAMES,
    HYPOTHETICALS,
    LANGS_CODE,
    NUMBER_WORDS,
    OBJECTS,
    PAIR_INTENTS,
    PREFIXES,
    PURPOSE_FRAMES,
    PURPOSES,
    SCOPES,
    SUPPORT,
    TOOL_INTENTS,
    TOOLS,
    TOPICS,
    UNITS,
    VERB_FRAMES,
    VERBS,
    WHO_FACTS,
    WHO_FRAMES,
)

Pair = tuple[str, str, int, str]  # a, b, label, kind


# Intents over one tool/entity slot {T}; several forms each (formal, casual, telegraphic).


def _surface(rng: random.Random, text: str) -> str:
    """Meaning-preserving noise: contractions, case, trailing punctuation, polite prefixes."""
    if rng.random() < 0.4:
        for long, short in CONTRACTIONS:
            pat = re.compile(re.escape(long), re.IGNORECASE)
            if pat.search(text) and rng.random() < 0.7:
                text = pat.sub(short, text, count=1)
    if rng.random() < 0.25:
        text = text.lower()
    if rng.random() < 0.25:
        text = text.rstrip("?.!")
    if rng.random() < 0.2:
        prefix = rng.choice(PREFIXES)
        text = prefix + (text[:1].lower() + text[1:] if prefix else text)
    return text


def _forms_pairs(
    rng: random.Random, intents: dict[str, list[str]], slot: str, values: list[str], n: int, kind: str
) -> Iterator[Pair]:
    names = list(intents)
    for _ in range(n):
        intent = rng.choice(names)
        forms = intents[intent]
        v = rng.choice(values)
        fa, fb = rng.sample(forms, 2)
        a = fa.replace(slot, v)
        r = rng.random()
        if r < 0.45:  # paraphrase
            yield _surface(rng, a), _surface(rng, fb.replace(slot, v)), 1, f"{kind}:para"
        elif r < 0.75:  # same intent, other entity
            w = rng.choice([x for x in values if x != v])
            yield _surface(rng, a), _surface(rng, fb.replace(slot, w)), 0, f"{kind}:entity"
        else:  # same entity, other intent
            other = rng.choice([x for x in names if x != intent])
            yield (
                _surface(rng, a),
                _surface(rng, rng.choice(intents[other]).replace(slot, v)),
                0,
                f"{kind}:intent",
            )


def _pair_intents(rng: random.Random, n: int) -> Iterator[Pair]:
    names = list(PAIR_INTENTS)
    for _ in range(n):
        intent = rng.choice(names)
        t, u = rng.sample(TOOLS, 2)
        fa, fb = rng.sample(PAIR_INTENTS[intent], 2)
        a = fa.format(T=t, U=u)
        r = rng.random()
        if r < 0.4:
            b = fb.format(T=t, U=u)
            yield _surface(rng, a), _surface(rng, b), 1, "pair:para"
        elif r < 0.55 and intent != "migrate":  # symmetric relation: swapping is still a paraphrase
            yield _surface(rng, a), _surface(rng, fb.format(T=u, U=t)), 1, "pair:sym"
        elif r < 0.7 and intent == "migrate":
            yield _surface(rng, a), _surface(rng, fb.format(T=u, U=t)), 0, "pair:direction"
        else:
            w = rng.choice([x for x in TOOLS if x not in (t, u)])
            yield _surface(rng, a), _surface(rng, fb.format(T=t, U=w)), 0, "pair:entity"


def _convert(rng: random.Random, n: int) -> Iterator[Pair]:
    forms = [
        "Convert {n} {a} to {b}",
        "How many {b} is {n} {a}?",
        "What is {n} {a} in {b}?",
        "{n} {a} to {b}",
        "{n} {a} equals how many {b}?",
        "Can you convert {n} {a} into {b} for me?",
    ]
    for _ in range(n):
        ua, ub = rng.choice(UNITS)
        num = rng.choice([1, 2, 3, 5, 10, 12, 20, 25, 50, 100, 150, 500, 1000])
        fa, fb = rng.sample(forms, 2)
        a = fa.format(n=num, a=ua, b=ub)
        r = rng.random()
        if r < 0.4:
            nb = NUMBER_WORDS.get(num, num) if rng.random() < 0.2 else num
            yield a, fb.format(n=nb, a=ua, b=ub), 1, "convert:para"
        elif r < 0.6:
            other = rng.choice([x for x in (1, 2, 5, 10, 15, 50, 100, 200, 1000) if x != num])
            yield a, fb.format(n=other, a=ua, b=ub), 0, "convert:number"
        elif r < 0.8:
            yield a, fb.format(n=num, a=ub, b=ua), 0, "convert:direction"
        else:
            u2 = rng.choice([u for u in UNITS if u[0] != ua])
            yield a, fb.format(n=num, a=u2[0], b=u2[1]), 0, "convert:unit"


def _code(rng: random.Random, n: int) -> Iterator[Pair]:
    forms = [
        "Write a {L} function that {t3}",
        "How do I {t} in {L}?",
        "{L} code to {t}",
        "Can you show me {L} code that {t3}?",
        "In {L}, what's the best way to {t}?",
        "I need a {L} snippet to {t}",
        "Implement a function in {L} which {t3}",
    ]
    for _ in range(n):
        li = rng.randrange(len(CODE_TASKS))
        t, t3 = CODE_TASKS[li]
        lang = rng.choice(LANGS_CODE)
        fa, fb = rng.sample(forms, 2)
        a = fa.format(L=lang, t=t, t3=t3)
        r = rng.random()
        if r < 0.45:
            yield _surface(rng, a), _surface(rng, fb.format(L=lang, t=t, t3=t3)), 1, "code:para"
        elif r < 0.7:
            other = rng.choice([x for x in LANGS_CODE if x != lang])
            yield _surface(rng, a), _surface(rng, fb.format(L=other, t=t, t3=t3)), 0, "code:language"
        else:
            ot, ot3 = CODE_TASKS[rng.choice([i for i in range(len(CODE_TASKS)) if i != li])]
            yield _surface(rng, a), _surface(rng, fb.format(L=lang, t=ot, t3=ot3)), 0, "code:task"


def _writing(rng: random.Random, n: int) -> Iterator[Pair]:
    kinds = [
        "poem",
        "haiku",
        "short story",
        "essay",
        "blog post",
        "limerick",
        "speech",
        "tweet",
        "cover letter",
    ]
    forms = [
        "Write a {k} about {t}",
        "Can you write me a {k} on {t}?",
        "Compose a {k} about {t}",
        "I'd like a {k} about {t}",
        "Please draft a {k} on the topic of {t}",
        "{k} about {t}, please",
    ]
    for _ in range(n):
        k, t = rng.choice(kinds), rng.choice(TOPICS)
        fa, fb = rng.sample(forms, 2)
        a = fa.format(k=k, t=t)
        r = rng.random()
        if r < 0.4:
            yield _surface(rng, a), _surface(rng, fb.format(k=k, t=t)), 1, "writing:para"
        elif r < 0.65:
            yield a, fb.format(k=rng.choice([x for x in kinds if x != k]), t=t), 0, "writing:format"
        elif r < 0.85:
            yield a, fb.format(k=k, t=rng.choice([x for x in TOPICS if x != t])), 0, "writing:topic"
        else:
            words = rng.choice([(100, 500), (50, 200), (300, 1000), (3, 5)])
            unit = "lines" if words[0] < 10 else "words"
            yield (
                f"{a} in {words[0]} {unit}",
                f"{fb.format(k=k, t=t)} in {words[1]} {unit}",
                0,
                "writing:number",
            )


def _translate_format(rng: random.Random, n: int) -> Iterator[Pair]:
    phrases = [
        "good morning",
        "where is the train station",
        "thank you very much",
        "I love you",
        "how much does this cost",
        "happy birthday",
        "see you tomorrow",
        "the meeting is cancelled",
        "I am allergic to peanuts",
    ]
    tforms = [
        "Translate '{p}' into {L}",
        "How do you say '{p}' in {L}?",
        "What is '{p}' in {L}?",
        "'{p}' in {L} please",
        'Can you translate "{p}" to {L}?',
    ]
    fforms = [
        "Convert this {A} to {B}",
        "Turn the following {A} into {B}",
        "Can you rewrite this {A} as {B}?",
        "Change this {A} data into {B} format",
    ]
    for _ in range(n):
        if rng.random() < 0.5:
            p, lang = rng.choice(phrases), rng.choice(HUMAN_LANGS)
            fa, fb = rng.sample(tforms, 2)
            a = fa.format(p=p, L=lang)
            r = rng.random()
            if r < 0.45:
                yield a, fb.format(p=p, L=lang), 1, "translate:para"
            elif r < 0.8:
                yield (
                    a,
                    fb.format(p=p, L=rng.choice([x for x in HUMAN_LANGS if x != lang])),
                    0,
                    "translate:language",
                )
            else:
                yield (
                    a,
                    fb.format(p=rng.choice([x for x in phrases if x != p]), L=lang),
                    0,
                    "translate:phrase",
                )
        else:
            fa_, fb_ = rng.sample(FORMATS, 2)
            f1, f2 = rng.sample(fforms, 2)
            a = f1.format(A=fa_, B=fb_)
            r = rng.random()
            if r < 0.4:
                yield a, f2.format(A=fa_, B=fb_), 1, "format:para"
            elif r < 0.7:
                yield a, f2.format(A=fb_, B=fa_), 0, "format:direction"
            else:
                yield (
                    a,
                    f2.format(A=fa_, B=rng.choice([x for x in FORMATS if x not in (fa_, fb_)])),
                    0,
                    "format:format",
                )


def _support(rng: random.Random, n: int) -> Iterator[Pair]:
    names = list(SUPPORT)
    for _ in range(n):
        intent = rng.choice(names)
        a, b = rng.sample(SUPPORT[intent], 2)
        if rng.random() < 0.45:
            yield _surface(rng, a), _surface(rng, b), 1, "support:para"
        else:
            other = rng.choice([x for x in names if x != intent])
            yield _surface(rng, a), _surface(rng, rng.choice(SUPPORT[other])), 0, "support:intent"


def _math(rng: random.Random, n: int) -> Iterator[Pair]:
    ops = {
        "times": ["What is {a} times {b}?", "Calculate {a} * {b}", "Multiply {a} by {b}", "{a} x {b} = ?"],
        "plus": ["What is {a} plus {b}?", "Calculate {a} + {b}", "Add {a} and {b}", "{a} + {b} = ?"],
        "minus": ["What is {a} minus {b}?", "Calculate {a} - {b}", "Subtract {b} from {a}", "{a} - {b} = ?"],
        "percent": [
            "What is {a}% of {b}?",
            "Calculate {a} percent of {b}",
            "{a}% of {b}?",
            "How much is {a} percent of {b}?",
        ],
        "sqrt": [
            "What is the square root of {a}?",
            "Calculate the square root of {a}",
            "sqrt of {a}?",
            "Find the square root of {a}",
        ],
    }
    names = list(ops)
    for _ in range(n):
        op = rng.choice(names)
        x, y = rng.randint(2, 99), rng.randint(2, 99)
        fa, fb = rng.sample(ops[op], 2)
        a = fa.format(a=x, b=y)
        r = rng.random()
        if r < 0.4:
            yield a, fb.format(a=x, b=y), 1, "math:para"
        elif r < 0.75:
            yield a, fb.format(a=x, b=rng.choice([y + 1, y * 10, y + 10, max(1, y - 1)])), 0, "math:number"
        else:
            other = rng.choice([o for o in names if o != op])
            yield a, rng.choice(ops[other]).format(a=x, b=y), 0, "math:op"


def _mutations(rng: random.Random, pool: list[str], n: int) -> Iterator[Pair]:
    """Near-misses made by mutating one prompt of the pool (QQP train questions and generated prompts)."""
    made = 0
    tries = 0
    while made < n and tries < n * 20:
        tries += 1
        text = rng.choice(pool)
        kind, out = _mutate(rng, text)
        if out is not None and out != text:
            made += 1
            yield (text, out, 0, f"mut:{kind}") if rng.random() < 0.5 else (out, text, 0, f"mut:{kind}")


def _mutate(rng: random.Random, text: str) -> tuple[str, str | None]:
    choice = rng.random()
    words = text.split()
    if choice < 0.25:
        nums = [i for i, w in enumerate(words) if re.fullmatch(r"\d+(\.\d+)?[a-zA-Z%]*[?.,]?", w)]
        if nums:
            i = rng.choice(nums)
            m = re.match(r"(\d+)(.*)", words[i])
            if m:
                v = int(m.group(1))
                words[i] = str(rng.choice([v + 1, v * 10, v * 2, v + 5, max(0, v - 1)])) + m.group(2)
                return "number", " ".join(words)
    if choice < 0.45:
        for aux in ("is", "are", "can", "do", "does", "should", "will", "was", "did"):
            if aux in words[1:4]:
                i = words.index(aux)
                return "negation", " ".join([*words[: i + 1], "not", *words[i + 1 :]])
    if choice < 0.7:
        for x, y in rng.sample(ANTONYMS, len(ANTONYMS)):
            for s, t in ((x, y), (y, x)):
                pat = re.compile(rf"\b{s}\b", re.IGNORECASE)
                if pat.search(text):
                    return "antonym", pat.sub(t, text, count=1)
    if choice < 0.85:
        for s, t in rng.sample(SCOPES, len(SCOPES)):
            if s in text:
                return "scope", text.replace(s, t)
    caps = [
        i for i, w in enumerate(words[1:], 1) if w[:1].isupper() and w.strip("?.,!").isalpha() and w != "I"
    ]
    if caps:
        i = rng.choice(caps)
        w = words[i].strip("?.,!")
        pool = (
            COUNTRIES
            if w in COUNTRIES
            else CITIES
            if w in CITIES
            else TOOLS
            if w in TOOLS
            else COUNTRIES + CITIES
        )
        words[i] = words[i].replace(w, rng.choice([x for x in pool if x != w]))
        return "entity", " ".join(words)
    return "none", None


def _scope_pairs(rng: random.Random, pool: list[str], n: int) -> Iterator[Pair]:
    """A base request with a scope, against the same request with the contrasting scope."""
    for _ in range(n):
        q = rng.choice(pool).rstrip("?.!")
        s, t = rng.choice(SCOPES)
        if rng.random() < 0.5:
            s, t = t, s
        yield f"{q} {s}?", f"{q} {t}?", 0, "scope"


def generate(rng: random.Random, qqp_questions: list[str], scale: int = 1) -> list[Pair]:
    """All synthetic pairs; `qqp_questions` must come from the QQP train half only."""
    out: list[Pair] = []
    out += _forms_pairs(rng, TOOL_INTENTS, "{T}", TOOLS, 9000 * scale, "tool")
    out += _forms_pairs(rng, COUNTRY_INTENTS, "{C}", COUNTRIES, 3500 * scale, "country")
    out += _forms_pairs(rng, FOOD_INTENTS, "{F}", FOODS, 1500 * scale, "food")
    dish_intents = {
        "recipe": [
            "How do I make {D}?",
            "Give me a recipe for {D}",
            "What's a good {D} recipe?",
            "How to cook {D} at home",
            "Step by step {D} recipe please",
        ],
        "time": [
            "How long does {D} take to make?",
            "How much time do I need to prepare {D}?",
            "{D} prep time?",
        ],
        "vegan": ["How do I make vegan {D}?", "Give me a vegan recipe for {D}", "vegan {D} recipe?"],
        "history": ["Where does {D} come from?", "What is the origin of {D}?", "{D} origin?"],
    }
    out += _forms_pairs(rng, dish_intents, "{D}", DISHES, 1500 * scale, "dish")
    out += _pair_intents(rng, 2500 * scale)
    out += _convert(rng, 2000 * scale)
    out += _code(rng, 3000 * scale)
    out += _writing(rng, 1500 * scale)
    out += _translate_format(rng, 2000 * scale)
    out += _support(rng, 1200 * scale)
    out += _math(rng, 1500 * scale)
    out += _frames(rng, 9000 * scale)
    generated = [a for a, _, _, _ in out]
    pool = qqp_questions + generated
    out += _mutations(rng, pool, 6000 * scale)
    out += _scope_pairs(rng, pool, 1500 * scale)
    # QQP questions under meaning-preserving noise: positives that teach invariance to surface form.
    for q in rng.sample(qqp_questions, min(len(qqp_questions), 2500 * scale)):
        b = _surface(rng, q)
        if b != q:
            out.append((q, b, 1, "qqp:surface"))
    seen: set[tuple[str, str]] = set()
    uniq: list[Pair] = []
    for p in out:
        if p[0] != p[1] and (p[0], p[1]) not in seen:
            seen.add((p[0], p[1]))
            uniq.append(p)
    return uniq


# Rewording frames: one proposition said in styles LLM users mix (question, imperative, hypothetical,
# ethical judgement, purpose). Label 1 within a frame family and the same content; label 0 when the
# content changes. Contents are written here; none comes from an evaluation file.


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _frames(rng: random.Random, n: int) -> Iterator[Pair]:
    for _ in range(n):
        r = rng.random()
        if r < 0.2:
            i = rng.randrange(len(HYPOTHETICALS))
            c, q1, q2 = HYPOTHETICALS[i]
            (f1, _), (f2, _) = rng.sample(HYPO_FRAMES, 2)
            a = f1.format(c=c, q=rng.choice([q1, q2]), Q=_cap(rng.choice([q1, q2])))
            if rng.random() < 0.5:
                b = f2.format(c=c, q=rng.choice([q1, q2]), Q=_cap(rng.choice([q1, q2])))
                yield a, b, 1, "frame:hypo"
            else:
                c2, p1, _ = HYPOTHETICALS[rng.choice([j for j in range(len(HYPOTHETICALS)) if j != i])]
                mix = rng.random() < 0.5  # same question, other condition / other question, same condition
                b = f2.format(c=c2 if mix else c, q=q1 if mix else p1, Q=_cap(q1 if mix else p1))
                yield a, b, 0, "frame:hypo_other"
        elif r < 0.4:
            x = rng.choice(ETHICS)
            f1, f2 = rng.sample(ETHIC_FRAMES, 2)
            if rng.random() < 0.5:
                yield f1.format(x=x), f2.format(x=x), 1, "frame:ethics"
            else:
                yield (
                    f1.format(x=x),
                    f2.format(x=rng.choice([e for e in ETHICS if e != x])),
                    0,
                    "frame:ethics_other",
                )
        elif r < 0.55:
            i = rng.randrange(len(PURPOSES))
            f1, f2 = rng.sample(PURPOSE_FRAMES, 2)
            j = i if rng.random() < 0.5 else rng.choice([k for k in range(len(PURPOSES)) if k != i])
            yield (
                f1.format(a=PURPOSES[i][0], b=PURPOSES[i][1]),
                f2.format(a=PURPOSES[j][0], b=PURPOSES[j][1]),
                int(i == j),
                "frame:purpose",
            )
        elif r < 0.7:
            i = rng.randrange(len(WHO_FACTS))
            f1, f2 = rng.sample(WHO_FRAMES, 2)
            j = i if rng.random() < 0.5 else rng.choice([k for k in range(len(WHO_FACTS)) if k != i])
            (v1, n1), (v2, n2) = WHO_FACTS[i], WHO_FACTS[j]
            yield (
                f1.format(v=v1, n=n1, N=_cap(n1)),
                f2.format(v=v2, n=n2, N=_cap(n2)),
                int(i == j),
                "frame:who",
            )
        elif r < 0.85:
            t = rng.choice(TOOLS)
            i = rng.randrange(len(ASPECTS))
            f1, f2 = rng.sample(ASPECT_FRAMES, 2)
            j = i if rng.random() < 0.45 else rng.choice([k for k in range(len(ASPECTS)) if k != i])
            yield (
                f1.format(a=rng.choice(ASPECTS[i]), T=t),
                f2.format(a=rng.choice(ASPECTS[j]), T=t),
                int(i == j),
                "frame:aspect",
            )
        else:
            o = rng.choice(OBJECTS)
            i = rng.randrange(len(VERBS))
            f1, f2 = rng.sample(VERB_FRAMES, 2)
            j = i if rng.random() < 0.45 else rng.choice([k for k in range(len(VERBS)) if k != i])
            v1, v2 = rng.choice(VERBS[i]), rng.choice(VERBS[j])
            yield (
                f1.format(v=v1, V=_cap(v1), o=o),
                f2.format(v=v2, V=_cap(v2), o=o),
                int(i == j),
                "frame:verb",
            )
