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

Pair = tuple[str, str, int, str]  # a, b, label, kind

TOOLS = (
    "Python Docker Kubernetes Git Postgres MySQL Redis React Vue Django Flask pandas NumPy PyTorch "
    "TensorFlow Nginx Terraform Ansible Node.js Rust Go Java Excel VS-Code Jenkins Kafka MongoDB "
    "Elasticsearch Spark Airflow Milvus Grafana Prometheus Linux Ubuntu Windows macOS Slack Zoom "
    "Jupyter Anaconda Homebrew npm Angular Svelte FastAPI Spring Laravel Rails SQLite GraphQL Helm"
).replace("VS-Code", "VS_Code").split()
TOOLS = [t.replace("_", " ") for t in TOOLS]
LANGS_CODE = "Python JavaScript TypeScript Java C++ C# Go Rust Ruby PHP Kotlin Swift Scala Bash R".split()
COUNTRIES = (
    "France Germany Spain Italy Japan China India Brazil Canada Mexico Egypt Kenya Nigeria Peru Chile "
    "Austria Australia Sweden Norway Poland Greece Turkey Iran Iraq Vietnam Thailand Argentina Portugal "
    "Ireland Iceland Switzerland Belgium Netherlands Denmark Finland Colombia Morocco Ghana Nepal"
).split()
CITIES = (
    "Paris London Berlin Madrid Rome Tokyo Beijing Delhi Sydney Toronto Chicago Boston Seattle Miami "
    "Vienna Prague Lisbon Dublin Oslo Cairo Nairobi Lima Bangkok Seoul Istanbul Amsterdam Munich Denver"
).split()
HUMAN_LANGS = "French German Spanish Italian Japanese Chinese Portuguese Russian Korean Arabic Dutch Hindi".split()
FORMATS = ["JSON", "YAML", "CSV", "XML", "Markdown", "HTML", "a table", "a bulleted list", "plain text", "TOML"]
UNITS = [
    ("kilometers", "miles"), ("miles", "kilometers"), ("Celsius", "Fahrenheit"), ("Fahrenheit", "Celsius"),
    ("kilograms", "pounds"), ("pounds", "kilograms"), ("liters", "gallons"), ("gallons", "liters"),
    ("inches", "centimeters"), ("centimeters", "inches"), ("meters", "feet"), ("feet", "meters"),
    ("ounces", "grams"), ("grams", "ounces"), ("hours", "minutes"), ("megabytes", "gigabytes"),
]
TOPICS = (
    "climate change|the ocean|friendship|artificial intelligence|the moon|autumn leaves|remote work|"
    "a lost dog|coffee|the history of Rome|electric cars|social media|a rainy day|space travel|my grandmother|"
    "machine learning|the French revolution|healthy sleep|city life|the stock market"
).split("|")
FOODS = "eggs salmon tuna cheese rice bananas avocado chicken spinach almonds tofu yogurt oats lentils".split()
DISHES = ["lasagna", "pancakes", "banana bread", "chili", "guacamole", "risotto", "pad thai", "sourdough bread",
          "tiramisu", "hummus", "fried rice", "apple pie"]
CODE_TASKS = [
    ("reverse a string", "reverses a string"), ("sort a list of numbers", "sorts a list of numbers"),
    ("check if a number is prime", "checks whether a number is prime"),
    ("read a CSV file", "reads a CSV file"), ("remove duplicates from a list", "removes duplicates from a list"),
    ("find the largest element in an array", "finds the largest element in an array"),
    ("count the words in a file", "counts the words in a file"), ("merge two dictionaries", "merges two dictionaries"),
    ("parse a JSON string", "parses a JSON string"), ("send an HTTP GET request", "sends an HTTP GET request"),
    ("compute the factorial of a number", "computes the factorial of a number"),
    ("flatten a nested list", "flattens a nested list"), ("validate an email address", "validates an email address"),
    ("generate a random password", "generates a random password"), ("connect to a database", "connects to a database"),
    ("download a file from a URL", "downloads a file from a URL"), ("split a string by commas", "splits a string by commas"),
    ("convert a string to an integer", "converts a string to an integer"),
]
SUPPORT = {
    "reset_password": ["How do I reset my password?", "I forgot my password, how can I reset it?",
                       "password reset steps?", "Can you help me reset my password", "how to change a forgotten password"],
    "change_email": ["How do I change my email address?", "How can I update the email on my account?",
                     "change account email?", "I want to use a different email address for my account"],
    "cancel_sub": ["How do I cancel my subscription?", "I want to cancel my subscription, how?",
                   "How can I stop my subscription from renewing?", "cancel subscription"],
    "refund": ["How can I get a refund?", "How do I request my money back?", "refund process?",
               "What do I need to do to get refunded?"],
    "delete_account": ["How do I delete my account?", "How can I permanently remove my account?",
                       "delete my account please", "steps to close my account for good"],
    "billing": ["How do I update my billing information?", "How can I change my payment method?",
                "update credit card on file", "I need to change the card I pay with"],
    "invoice": ["Where can I download my invoice?", "How do I get a copy of my invoice?", "invoice download?",
                "Where do I find my past invoices?"],
    "track_order": ["Where is my order?", "How can I track my package?", "track my order", "What's the status of my delivery?"],
    "contact": ["How do I contact customer support?", "How can I reach a human agent?", "support phone number?",
                "What is the best way to get in touch with support?"],
    "two_factor": ["How do I turn on two-factor authentication?", "How can I set up 2FA on my account?",
                   "enable two factor auth", "Help me activate two-step verification"],
}

# Intents over one tool/entity slot {T}; several forms each (formal, casual, telegraphic).
TOOL_INTENTS = {
    "install": ["How do I install {T}?", "What's the easiest way to install {T}?", "{T} installation steps?",
                "Can you walk me through installing {T}?", "how to set up {T} on my machine", "Guide to installing {T}"],
    "uninstall": ["How do I uninstall {T}?", "How can I completely remove {T}?", "steps to uninstall {T}",
                  "What's the right way to get rid of {T} on my computer?"],
    "update": ["How do I update {T} to the latest version?", "How can I upgrade {T}?", "upgrade {T} to newest version",
               "What's the command to update {T}?"],
    "what_is": ["What is {T}?", "Can you explain what {T} is?", "{T} - what is it?", "Give me a short overview of {T}",
                "What exactly is {T} used for?", "Explain {T} to me"],
    "pros": ["What are the advantages of {T}?", "Why should I use {T}?", "What are the benefits of using {T}?",
             "{T} pros?", "What makes {T} a good choice?"],
    "cons": ["What are the disadvantages of {T}?", "What are the drawbacks of {T}?", "{T} cons?",
             "What are the downsides of using {T}?"],
    "learn": ["How can I learn {T} quickly?", "What's the fastest way to learn {T}?", "best resources to learn {T}",
              "How should I start learning {T}?", "Where do I begin if I want to learn {T}?"],
    "alternatives": ["What are some alternatives to {T}?", "What can I use instead of {T}?", "{T} alternatives?",
                     "Which tools are similar to {T}?"],
    "version": ["What is the latest version of {T}?", "Which version of {T} is the newest?", "current {T} version?",
                "What's the most recent {T} release?"],
    "debug": ["Why is {T} not working?", "{T} stopped working, what should I do?", "How do I troubleshoot {T}?",
              "{T} is broken, how can I fix it?"],
    "config": ["How do I configure {T}?", "Where is the {T} configuration file?", "How can I change the settings of {T}?",
               "{T} config location?"],
    "performance": ["How can I make {T} faster?", "How do I improve the performance of {T}?", "{T} is slow, how to speed it up?",
                    "Tips for optimizing {T} performance"],
    "security": ["Is {T} secure?", "How safe is it to use {T}?", "Does {T} have security issues?",
                 "What are the security risks of {T}?"],
    "pricing": ["How much does {T} cost?", "Is {T} free?", "What is the pricing of {T}?", "{T} price?"],
    "example": ["Can you show me an example of {T}?", "Give me a {T} example", "{T} example?", "Show me sample {T} code"],
    "history": ["Who created {T}?", "Who developed {T} originally?", "Who made {T}?", "{T} creator?"],
}
PAIR_INTENTS = {  # {T} and {U}
    "compare": ["What is the difference between {T} and {U}?", "How does {T} compare to {U}?",
                "{T} vs {U}: which should I pick?", "Should I use {T} or {U}?", "Compare {T} and {U}"],
    "migrate": ["How do I migrate from {T} to {U}?", "What are the steps to move from {T} to {U}?",
                "switching from {T} to {U}, how?", "Guide for migrating {T} to {U}"],
    "integrate": ["How do I use {T} with {U}?", "How can I integrate {T} with {U}?", "{T} {U} integration?",
                  "Can {T} work together with {U}?"],
}
COUNTRY_INTENTS = {
    "capital": ["What is the capital of {C}?", "Which city is the capital of {C}?", "capital city of {C}?",
                "Tell me the capital of {C}", "What's {C}'s capital?"],
    "population": ["What is the population of {C}?", "How many people live in {C}?", "{C} population?",
                   "How populous is {C}?"],
    "language": ["What language is spoken in {C}?", "What do people speak in {C}?", "official language of {C}?",
                 "Which languages are spoken in {C}?"],
    "currency": ["What currency does {C} use?", "What is the currency of {C}?", "{C} currency?",
                 "What money do they use in {C}?"],
    "visit": ["What is the best time to visit {C}?", "When should I travel to {C}?", "best season to go to {C}?",
              "When is the ideal time for a trip to {C}?"],
    "food": ["What is the national dish of {C}?", "What food is {C} famous for?", "traditional food of {C}?",
             "What should I eat when I visit {C}?"],
    "visa": ["Do I need a visa to visit {C}?", "What are the visa requirements for {C}?", "visa for {C}?",
             "Is a visa required to travel to {C}?"],
}
FOOD_INTENTS = {
    "calories": ["How many calories are in {F}?", "What is the calorie count of {F}?", "{F} calories?",
                 "How much energy do {F} have in calories?"],
    "protein": ["How much protein is in {F}?", "What is the protein content of {F}?", "{F} protein?",
                "Are {F} a good source of protein?"],
    "healthy": ["Are {F} healthy?", "Is eating {F} good for you?", "What are the health benefits of {F}?",
                "Should I eat {F} every day?"],
    "storage": ["How should I store {F}?", "What's the best way to keep {F} fresh?", "How long do {F} last in the fridge?",
                "storing {F}?"],
}
PREFIXES = ["", "", "", "Please tell me: ", "Quick question: ", "Hey, ", "I was wondering, ", "Can you help? "]
CONTRACTIONS = [("what is", "what's"), ("do not", "don't"), ("can not", "can't"), ("it is", "it's"),
                ("does not", "doesn't"), ("I am", "I'm"), ("is not", "isn't"), ("how is", "how's")]
SCOPES = [("for beginners", "for experts"), ("in summer", "in winter"), ("for kids", "for adults"),
          ("on Windows", "on Mac"), ("on Linux", "on Windows"), ("for a small team", "for a large enterprise"),
          ("at night", "in the morning"), ("for dogs", "for cats"), ("in the morning", "in the evening"),
          ("for a vegetarian", "for a vegan"), ("for my boss", "for my friend"), ("in the US", "in the UK")]
ANTONYMS = [("increase", "decrease"), ("maximum", "minimum"), ("largest", "smallest"), ("first", "last"),
            ("before", "after"), ("ascending", "descending"), ("enable", "disable"), ("upload", "download"),
            ("import", "export"), ("encrypt", "decrypt"), ("add", "remove"), ("start", "stop"),
            ("open", "close"), ("show", "hide"), ("lock", "unlock"), ("buy", "sell"), ("odd", "even"),
            ("highest", "lowest"), ("faster", "slower"), ("public", "private"), ("install", "uninstall")]
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                9: "nine", 10: "ten", 12: "twelve", 20: "twenty", 50: "fifty", 100: "a hundred"}


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


def _forms_pairs(rng: random.Random, intents: dict[str, list[str]], slot: str, values: list[str],
                 n: int, kind: str) -> Iterator[Pair]:
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
            yield _surface(rng, a), _surface(rng, rng.choice(intents[other]).replace(slot, v)), 0, f"{kind}:intent"


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
    forms = ["Convert {n} {a} to {b}", "How many {b} is {n} {a}?", "What is {n} {a} in {b}?", "{n} {a} to {b}",
             "{n} {a} equals how many {b}?", "Can you convert {n} {a} into {b} for me?"]
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
    forms = ["Write a {L} function that {t3}", "How do I {t} in {L}?", "{L} code to {t}",
             "Can you show me {L} code that {t3}?", "In {L}, what's the best way to {t}?",
             "I need a {L} snippet to {t}", "Implement a function in {L} which {t3}"]
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
    kinds = ["poem", "haiku", "short story", "essay", "blog post", "limerick", "speech", "tweet", "cover letter"]
    forms = ["Write a {k} about {t}", "Can you write me a {k} on {t}?", "Compose a {k} about {t}",
             "I'd like a {k} about {t}", "Please draft a {k} on the topic of {t}", "{k} about {t}, please"]
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
            yield f"{a} in {words[0]} {unit}", f"{fb.format(k=k, t=t)} in {words[1]} {unit}", 0, "writing:number"


def _translate_format(rng: random.Random, n: int) -> Iterator[Pair]:
    phrases = ["good morning", "where is the train station", "thank you very much", "I love you", "how much does this cost",
               "happy birthday", "see you tomorrow", "the meeting is cancelled", "I am allergic to peanuts"]
    tforms = ["Translate '{p}' into {L}", "How do you say '{p}' in {L}?", "What is '{p}' in {L}?",
              "'{p}' in {L} please", "Can you translate \"{p}\" to {L}?"]
    fforms = ["Convert this {A} to {B}", "Turn the following {A} into {B}", "Can you rewrite this {A} as {B}?",
              "Change this {A} data into {B} format"]
    for _ in range(n):
        if rng.random() < 0.5:
            p, lang = rng.choice(phrases), rng.choice(HUMAN_LANGS)
            fa, fb = rng.sample(tforms, 2)
            a = fa.format(p=p, L=lang)
            r = rng.random()
            if r < 0.45:
                yield a, fb.format(p=p, L=lang), 1, "translate:para"
            elif r < 0.8:
                yield a, fb.format(p=p, L=rng.choice([x for x in HUMAN_LANGS if x != lang])), 0, "translate:language"
            else:
                yield a, fb.format(p=rng.choice([x for x in phrases if x != p]), L=lang), 0, "translate:phrase"
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
                yield a, f2.format(A=fa_, B=rng.choice([x for x in FORMATS if x not in (fa_, fb_)])), 0, "format:format"


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
    ops = {"times": ["What is {a} times {b}?", "Calculate {a} * {b}", "Multiply {a} by {b}", "{a} x {b} = ?"],
           "plus": ["What is {a} plus {b}?", "Calculate {a} + {b}", "Add {a} and {b}", "{a} + {b} = ?"],
           "minus": ["What is {a} minus {b}?", "Calculate {a} - {b}", "Subtract {b} from {a}", "{a} - {b} = ?"],
           "percent": ["What is {a}% of {b}?", "Calculate {a} percent of {b}", "{a}% of {b}?", "How much is {a} percent of {b}?"],
           "sqrt": ["What is the square root of {a}?", "Calculate the square root of {a}", "sqrt of {a}?", "Find the square root of {a}"]}
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
    caps = [i for i, w in enumerate(words[1:], 1) if w[:1].isupper() and w.strip("?.,!").isalpha() and w != "I"]
    if caps:
        i = rng.choice(caps)
        w = words[i].strip("?.,!")
        pool = COUNTRIES if w in COUNTRIES else CITIES if w in CITIES else TOOLS if w in TOOLS else COUNTRIES + CITIES
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
    dish_intents = {"recipe": ["How do I make {D}?", "Give me a recipe for {D}", "What's a good {D} recipe?",
                               "How to cook {D} at home", "Step by step {D} recipe please"],
                    "time": ["How long does {D} take to make?", "How much time do I need to prepare {D}?",
                             "{D} prep time?"],
                    "vegan": ["How do I make vegan {D}?", "Give me a vegan recipe for {D}", "vegan {D} recipe?"],
                    "history": ["Where does {D} come from?", "What is the origin of {D}?", "{D} origin?"]}
    out += _forms_pairs(rng, dish_intents, "{D}", DISHES, 1500 * scale, "dish")
    out += _pair_intents(rng, 2500 * scale)
    out += _convert(rng, 2000 * scale)
    out += _code(rng, 3000 * scale)
    out += _writing(rng, 1500 * scale)
    out += _translate_format(rng, 2000 * scale)
    out += _support(rng, 1200 * scale)
    out += _math(rng, 1500 * scale)
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
