"""A cached answer replayed as a stream: the same chunk shape a live OpenAI stream has."""

from __future__ import annotations

from collections.abc import Iterator

from router.types import (
    ChatChunk,
    ChatResponse,
    ChunkChoice,
    Delta,
    FunctionCall,
    ToolCallDelta,
    Usage,
)

CHUNK_CHARS = 48


def replay_chunks(response: ChatResponse, *, include_usage: bool = False,
                  chunk_chars: int = CHUNK_CHARS) -> Iterator[ChatChunk]:
    """Role chunk, content pieces, tool-call deltas, the finish chunk and, if asked, a usage chunk."""
    rid, model, created = response.id, response.model, response.created

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatChunk:
        return ChatChunk(id=rid, model=model, created=created, choices=choices, usage=usage,
                         system_fingerprint=response.system_fingerprint)

    for choice in response.choices:
        i, msg = choice.index, choice.message
        yield chunk([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
        text = msg.content or ""
        for start in range(0, len(text), chunk_chars):
            yield chunk([ChunkChoice(index=i, delta=Delta(content=text[start:start + chunk_chars]))])
        for n, call in enumerate(msg.tool_calls or ()):
            yield chunk([ChunkChoice(index=i, delta=Delta(tool_calls=[ToolCallDelta(
                index=n, id=call.id, type="function",
                function=FunctionCall(name=call.function.name, arguments=call.function.arguments))]))])
        yield chunk([ChunkChoice(index=i, delta=Delta(), finish_reason=choice.finish_reason or "stop")])
    if include_usage and response.usage is not None:
        yield chunk([], usage=response.usage)
