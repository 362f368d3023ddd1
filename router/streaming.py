"""Stream plumbing: folding chunks into a full answer, and the caller-facing ``StreamResult``.

The accumulator is what lets the cache and the ledger see a streamed answer whole; ``StreamResult``
is what the caller iterates. Completeness is explicit: a stream is complete only when every choice
got a finish_reason AND the upstream ended it properly; anything else is reported, never hidden.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from router.types import ChatChunk, ChatResponse, Choice, FunctionCall, ResponseMessage, ToolCall, Usage

if TYPE_CHECKING:
    from router.candidate import Candidate
    from router.errors import Attempt


class _ChoiceState:
    __slots__ = ("calls", "finish", "refusal", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, ToolCall] = {}
        self.finish: str | None = None


class ChunkAccumulator:
    """Folds OpenAI-shaped chunks into one ChatResponse."""

    __slots__ = ("_choices", "created", "id", "model", "system_fingerprint", "usage")

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceState] = {}
        self.id = ""
        self.model = ""
        self.created = 0
        self.usage: Usage | None = None
        self.system_fingerprint: str | None = None

    def feed(self, chunk: ChatChunk) -> bool:
        """Add a chunk; True when it carried content (text, tool call, refusal or a finish_reason)."""
        if not self.id:
            self.id, self.model, self.created = chunk.id, chunk.model, chunk.created
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.system_fingerprint:
            self.system_fingerprint = chunk.system_fingerprint
        content = False
        for choice in chunk.choices:
            state = self._choices.get(choice.index)
            if state is None:
                state = self._choices[choice.index] = _ChoiceState()
            delta = choice.delta
            if delta.content:
                state.text.append(delta.content)
                content = True
            if delta.refusal:
                state.refusal.append(delta.refusal)
                content = True
            if delta.tool_calls:
                content = True
                for d in delta.tool_calls:
                    # OpenAI sends id and name only in a call's first chunk; calls interleave by index.
                    call = state.calls.get(d.index)
                    fn = d.function
                    if call is None:
                        call = state.calls[d.index] = ToolCall(id=d.id or "", function=FunctionCall(name=""))
                    elif d.id and not call.id:
                        call.id = d.id
                    if fn is not None:
                        if fn.name and not call.function.name:
                            call.function.name = fn.name
                        if fn.arguments:
                            call.function.arguments += fn.arguments
            if choice.finish_reason:
                state.finish = choice.finish_reason
                content = True
        return content

    @property
    def finished(self) -> bool:
        """Every choice seen got a finish_reason (and at least one choice was seen)."""
        return bool(self._choices) and all(s.finish for s in self._choices.values())

    @property
    def choice_count(self) -> int:
        return len(self._choices)

    @property
    def has_tool_calls(self) -> bool:
        return any(s.calls for s in self._choices.values())

    @property
    def has_refusal(self) -> bool:
        return any(s.refusal for s in self._choices.values())

    @property
    def text(self) -> str:
        state = self._choices.get(0)
        return "".join(state.text) if state else ""

    def response(self) -> ChatResponse:
        choices = []
        for index in sorted(self._choices):
            s = self._choices[index]
            message = ResponseMessage(
                content="".join(s.text) if s.text or not s.calls else None,
                tool_calls=[s.calls[i] for i in sorted(s.calls)] or None,
                refusal="".join(s.refusal) or None,
            )
            choices.append(Choice(index=index, message=message, finish_reason=s.finish))
        return ChatResponse(id=self.id, model=self.model, choices=choices, created=self.created,
                            usage=self.usage, system_fingerprint=self.system_fingerprint)


class StreamResult:
    """The caller's stream: iterate it for chunks; afterwards ``response``, ``cost_usd`` and the flags hold.

    ``complete`` is True only for a stream that ended with a finish_reason on every choice and a proper
    end of stream. ``cacheable`` additionally requires a ``stop`` finish. After a failure the iterator
    raises ``StreamInterrupted`` (after yielding the partial chunks) and ``complete`` stays False.
    """

    def __init__(self, source: AsyncIterator[ChatChunk], candidate: Candidate, attempts: list[Attempt]) -> None:
        self._source = source
        self.candidate = candidate
        self.attempts = attempts
        self.accumulator = ChunkAccumulator()
        self.complete = False
        self.continued = False  # finished by a fallback after the first upstream broke mid-answer
        self.error: BaseException | None = None
        self.cost_usd: float | None = None
        self.cost_estimated = False
        self.usage: Usage | None = None

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._source

    @property
    def response(self) -> ChatResponse:
        return self.accumulator.response()

    @property
    def result(self) -> ChatResponse:
        return self.accumulator.response()

    @property
    def cacheable(self) -> bool:
        if not self.complete or self.error is not None or self.continued:
            return False  # a stitched answer is what no single model wrote for this prompt: not stored
        choices = self.accumulator.response().choices
        return len(choices) == 1 and choices[0].finish_reason == "stop"

    async def aclose(self) -> None:
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()
