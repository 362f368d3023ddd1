"""Mid-stream recovery: finishing a stream that broke after content reached the caller.

The next candidate is asked to continue the text already sent: by assistant prefill where the model
supports it (``capabilities.assistant_prefill`` in the catalog: data, not code), otherwise by the text as
an assistant turn followed by a continuation instruction. Its chunks are spliced after what was sent:
the role chunk is dropped, ids are the first stream's, and a repeated overlap at the seam is trimmed.
"""

from __future__ import annotations

import msgspec

from models.tokens import estimate_messages, estimate_tokens
from router.candidate import Candidate
from router.streaming import ChunkAccumulator
from router.types import ChatChunk, ChatRequest, ChunkChoice, Delta, Message, Usage, text_of

CONTINUE_INSTRUCTION = (
    "Your previous reply above was cut off mid-way. Continue it from exactly where it stopped, as if "
    "nothing happened: do not repeat any of it, do not comment on the interruption; write only the rest."
)
SEAM_CHARS = 64  # how much of a continuation is held back to find a repeated overlap at the seam
MIN_OVERLAP = 4  # shorter repeats are taken as the text's own (" the the" is rarer than a cut word)


def continuable(request: ChatRequest, acc: ChunkAccumulator) -> str | None:
    """Why the stream cannot be continued, or None when it can.

    Only plain text is continued: a tool call cut mid-arguments cannot be resumed safely (a fallback
    would restart the JSON or call something else), nor can a refusal or n > 1 choices.
    """
    if (request.n or 1) > 1 or acc.choice_count > 1:
        return "n > 1 choices cannot be continued"
    if acc.has_tool_calls:
        return "a tool call cut mid-arguments cannot be continued safely"
    if acc.has_refusal:
        return "a refusal is not continued"
    if not acc.text:
        return "no text to continue from"
    if _left(request, acc.text) == 0:
        return "the answer already used its max_tokens"
    return None


def _left(request: ChatRequest, sent: str) -> int | None:
    """Output tokens the caller's limit leaves after ``sent`` (None: no limit)."""
    limit = request.max_completion_tokens or request.max_tokens
    return None if limit is None else max(0, limit - estimate_tokens(sent))


def continuation_request(request: ChatRequest, sent: str, prefill: bool) -> ChatRequest:
    """The request that asks a fallback for the rest of ``sent``."""
    if prefill:
        # Providers refuse a prefill ending in whitespace; the seam puts it back (``Seam``).
        messages = [*request.messages, Message(role="assistant", content=sent.rstrip())]
    else:
        messages = [*request.messages, Message(role="assistant", content=sent),
                    Message(role="user", content=CONTINUE_INSTRUCTION)]
    left = _left(request, sent)
    if left is None:
        return msgspec.structs.replace(request, messages=messages, n=None)
    # The caller's output limit covers the whole answer: the continuation gets what the first part left.
    field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
    return msgspec.structs.replace(request, messages=messages, n=None, **{field: max(1, left)})


def prompt_tokens(request: ChatRequest) -> int:
    return estimate_messages([text_of(m.content) for m in request.messages])


def fits(candidate: Candidate, request: ChatRequest) -> str | None:
    """Why ``candidate``'s window cannot hold the continuation request, or None."""
    need = prompt_tokens(request)
    window = candidate.model.context_window
    if need >= window:
        return f"context window {window} cannot hold the continuation's ~{need} prompt tokens"
    return None


def add_usage(a: Usage | None, b: Usage) -> Usage:
    if a is None:
        return b
    p, c = a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)


class Seam:
    """Rewrites a continuation's chunks so they read as the rest of the first stream."""

    __slots__ = ("_held_text", "_open", "_prior", "_sent", "_stripped", "first")

    def __init__(self, first: ChunkAccumulator, sent: str, prefill: bool, prior: Usage | None) -> None:
        self.first = first
        self._sent = sent
        self._stripped = prefill and sent != sent.rstrip()
        self._prior = prior  # usage of the earlier attempts, added to the continuation's usage chunk
        self._held_text: list[str] = []
        self._open = True  # still looking for the seam

    def feed(self, chunk: ChatChunk) -> list[ChatChunk]:
        """The chunks to pass on for one continuation chunk (possibly none yet, possibly several)."""
        chunk.id, chunk.model, chunk.created = self.first.id, self.first.model, self.first.created
        if chunk.usage is not None:
            chunk.usage = add_usage(self._prior, chunk.usage)
        for c in chunk.choices:
            c.delta.role = None
        if not self._open:
            return [chunk] if _worth_sending(chunk) else []
        only_text = chunk.usage is None and all(c.finish_reason is None and not c.delta.tool_calls
                                                for c in chunk.choices)
        if only_text:
            self._held_text.extend(c.delta.content or "" for c in chunk.choices)
            if len("".join(self._held_text)) < SEAM_CHARS:
                return []
            return self.flush()
        return [*self.flush(), chunk] if _worth_sending(chunk) else self.flush()

    def flush(self) -> list[ChatChunk]:
        """Release the held text with the seam's overlap removed."""
        if not self._open:
            return []
        self._open = False
        text = "".join(self._held_text)
        if self._stripped:
            text = text.lstrip()  # the whitespace the prefill dropped was already sent
        text = text[_overlap(self._sent, text):]
        if not text:
            return []
        return [ChatChunk(id=self.first.id, model=self.first.model, created=self.first.created,
                          choices=[ChunkChoice(index=0, delta=Delta(content=text))])]


def _overlap(sent: str, cont: str) -> int:
    """Length of the longest start of ``cont`` that repeats the end of ``sent`` (>= MIN_OVERLAP)."""
    for k in range(min(len(sent), len(cont)), MIN_OVERLAP - 1, -1):
        if sent.endswith(cont[:k]):
            return k
    return 0


def _worth_sending(chunk: ChatChunk) -> bool:
    if chunk.usage is not None:
        return True
    return any(c.delta.content or c.delta.tool_calls or c.delta.refusal or c.finish_reason for c in chunk.choices)
