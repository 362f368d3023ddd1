"""A whole answer as the chunks a live OpenAI stream would have sent.

Used for cache hits replayed as streams (``engine.replay``) and by the simulated provider, so both
stream exactly the shapes a client sees from OpenAI: a role chunk, content in pieces, each tool call
as OpenAI streams it (``id``, ``type`` and ``name`` in its first delta with empty arguments, later
deltas carrying only pieces of ``arguments``), a finish chunk per choice and, if asked, a usage chunk.
"""

from __future__ import annotations

from collections.abc import Iterator

from router.types import (
    ChatChunk,
    ChatResponse,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

CHUNK_CHARS = 48


def tool_call_deltas(n: int, call: ToolCall, chunk_chars: int = CHUNK_CHARS) -> Iterator[ToolCallDelta]:
    """One call as OpenAI streams it: id and name first, then the arguments in pieces."""
    yield ToolCallDelta(index=n, id=call.id, type="function",
                        function=FunctionCallDelta(name=call.function.name, arguments=""))
    args = call.function.arguments
    for start in range(0, len(args), chunk_chars):
        yield ToolCallDelta(index=n, function=FunctionCallDelta(arguments=args[start:start + chunk_chars]))


def response_chunks(response: ChatResponse, *, include_usage: bool = False,
                    chunk_chars: int = CHUNK_CHARS) -> Iterator[ChatChunk]:
    """Role chunk, content pieces, tool-call deltas, the finish chunk and, if asked, a usage chunk."""
    rid, model, created = response.id, response.model, response.created
    fingerprint = response.system_fingerprint
    step = max(1, chunk_chars)

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatChunk:
        return ChatChunk(id=rid, model=model, created=created, choices=choices, usage=usage,
                         system_fingerprint=fingerprint)

    for choice in response.choices:
        i, msg = choice.index, choice.message
        yield chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
        text = msg.content or ""
        for start in range(0, len(text), step):
            yield chunk([ChunkChoice(index=i, delta=Delta(content=text[start:start + step]))])
        if msg.refusal:
            yield chunk([ChunkChoice(index=i, delta=Delta(refusal=msg.refusal))])
        for n, call in enumerate(msg.tool_calls or ()):
            for piece in tool_call_deltas(n, call, step):
                yield chunk([ChunkChoice(index=i, delta=Delta(tool_calls=[piece]))])
        yield chunk([ChunkChoice(index=i, delta=Delta(), finish_reason=choice.finish_reason or "stop")])
    if include_usage and response.usage is not None:
        yield chunk([], usage=response.usage)
