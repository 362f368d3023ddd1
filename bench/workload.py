"""Request bodies the benchmarks send: prompts of a given size, unique or repeated, and pairs that must be
semantic hits (same meaning, different exact key)."""

from __future__ import annotations

import random
from typing import Any

import msgspec

_enc = msgspec.json.Encoder()

# Plain words, so a prompt of N words is close to N·1.3 tokens for a BERT or GPT tokenizer.
_TEXT = (
    "the service returns a list of orders for each customer and the report groups them by month so that "
    "finance can compare revenue across regions while support reviews delayed shipments and refunds in "
    "detail before the weekly meeting with the product team about pricing changes and new features"
)
_WORDS = tuple(_TEXT.split())

SIZES: dict[str, int] = {"short": 40, "medium": 500, "long": 8000}  # approximate tokens

# (stored prompt, a paraphrase that differs in its exact key but not its meaning) — a semantic hit. The
# products differ across pairs so that pairs do not hit each other.
_PRODUCTS = ("Acme CRM", "Zephyr Mail", "Orbit Drive", "Nimbus Notes", "Quartz Pay", "Falcon Chat",
             "Cobalt Docs", "Maple Calendar", "Vertex Photos", "Lumen Tasks", "Harbor VPN", "Summit Music")


def semantic_pairs() -> list[tuple[str, str]]:
    """The paraphrase keeps the stored prompt's length: the hit policy compares a long prompt's remainder
    (past what the encoder and guards read) position by position, so a shift would make it a miss."""
    return [(f"How do I reset my password for my {p} account?",
             f"how do i reset my password for my {p} account.") for p in _PRODUCTS]


def sized_pairs(size: str) -> list[tuple[str, str]]:
    """(stored, paraphrase) of about ``size``'s length: the question first (what the encoder sees: its window
    is the first 256 tokens), then filler. The filler's seed differs per size, so that a long prompt never
    begins with a medium one's text (they would be the same vector)."""
    if size == "short":
        return semantic_pairs()
    filler = " Context: " + prompt(SIZES[size] - 20, SIZES[size])
    return [(a + filler, b + filler) for a, b in semantic_pairs()]


def prompt(tokens: int, seed: int = 0, *, unique: str = "") -> str:
    """About ``tokens`` tokens of text; ``unique`` is prepended so that every request is a miss."""
    rng = random.Random(seed)
    words = [rng.choice(_WORDS) for _ in range(max(1, int(tokens / 1.3)))]
    head = f"Request {unique}: " if unique else ""
    return head + "Summarise this: " + " ".join(words) + "?"


def chat(text: str, *, model: str, stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    body.update(extra)
    return body


def chat_bytes(text: str, *, model: str, stream: bool = False, **extra: Any) -> bytes:
    return _enc.encode(chat(text, model=model, stream=stream, **extra))
