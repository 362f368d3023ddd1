"""A cheap local token estimate, shared by the router's constraints and dispatch's cost accounting.

No tokenizer: tiktoken downloads its vocabulary at run time, and a context-window check needs only a
safe upper-ish estimate. BPE vocabularies average about four characters per token on English prose and
fewer on code, digits and non-Latin scripts, so the estimate takes the larger of a character-based and a
word-based count and adds a small per-message overhead in ``estimate_messages``.
"""

from __future__ import annotations

_CHARS_PER_TOKEN = 4.0
_TOKENS_PER_WORD = 1.3
MESSAGE_OVERHEAD = 4  # role markers and separators per message in chat formats


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text`` (0 for the empty string)."""
    if not text:
        return 0
    by_chars = len(text) / _CHARS_PER_TOKEN
    # Non-ASCII text (CJK, Cyrillic, emoji) costs about one token per character or more.
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    by_chars += non_ascii * 0.75
    # Whitespace-separated words, counted in C (str.count), not with a regex: this runs on every request.
    words = text.count(" ") + text.count("\n") + 1
    by_words = words * _TOKENS_PER_WORD
    return max(1, int(max(by_chars, by_words) + 0.5))


def estimate_messages(texts: list[str]) -> int:
    """Estimated prompt tokens for a chat made of these message texts."""
    return sum(estimate_tokens(t) for t in texts) + MESSAGE_OVERHEAD * len(texts) + 2
