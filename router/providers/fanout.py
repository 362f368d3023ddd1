"""``n`` for wire formats that answer one choice per call: n parallel calls merged into one answer, or,
streamed, into one stream whose chunks carry choice indexes 0..n-1 (interleaved, as OpenAI's are)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable

import msgspec

from models.schema import Route
from router.deadline import Deadline
from router.providers.base import ChunkStream
from router.types import ChatChunk, ChatRequest, ChatResponse, Usage

MAX_FAN_OUT = 16  # n beyond this is refused: it multiplies cost and rate-limit use by n
Send = Callable[[ChatRequest, Route, Deadline], Awaitable[ChatResponse | ChunkStream]]


def _sum_usage(answers: list[ChatResponse] | list[ChatChunk]) -> Usage | None:
    usages = [a.usage for a in answers if a.usage is not None]
    if not usages:
        return None
    prompt = sum(u.prompt_tokens for u in usages)
    completion = sum(u.completion_tokens for u in usages)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


async def _all(send: Send, request: ChatRequest, route: Route, deadline: Deadline) -> list[ChatResponse | ChunkStream]:
    """n calls at once, each with n unset. One failure cancels the others (streams already open are
    closed) and is raised as is, so dispatch retries or falls back for the whole request."""
    one = msgspec.structs.replace(request, n=None)
    tasks = [asyncio.ensure_future(send(one, route, deadline)) for _ in range(request.n or 1)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, ChunkStream):
                await result.aclose()
        raise


async def fan_out(send: Send, request: ChatRequest, route: Route, deadline: Deadline) -> ChatResponse | ChunkStream:
    """Choice i is call i's answer; usage is the sum (the cost is what was really spent)."""
    results = await _all(send, request, route, deadline)
    streams = [r for r in results if isinstance(r, ChunkStream)]
    if streams:
        return ChunkStream(_merge(streams))
    answers = [r for r in results if isinstance(r, ChatResponse)]
    first = answers[0]
    choices = [msgspec.structs.replace(a.choices[0], index=i) for i, a in enumerate(answers)]
    return msgspec.structs.replace(first, choices=choices, usage=_sum_usage(answers))


async def _merge(streams: list[ChunkStream]) -> AsyncGenerator[ChatChunk, None]:
    """Chunks of stream i as choice i, in arrival order, under the first chunk's id and timestamp; the
    streams' usage chunks are held back and sent once, summed, after every stream has ended."""
    queue: asyncio.Queue[tuple[int, ChatChunk | BaseException | None]] = asyncio.Queue()

    async def pump(i: int, stream: ChunkStream) -> None:
        try:
            async for chunk in stream:
                await queue.put((i, chunk))
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put((i, exc))
        await queue.put((i, None))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    usage_chunks: list[ChatChunk] = []
    first: ChatChunk | None = None
    try:
        open_streams = len(streams)
        while open_streams:
            i, item = await queue.get()
            if item is None:
                open_streams -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            first = first or item
            if not item.choices:
                usage_chunks.append(item)
                continue
            yield msgspec.structs.replace(item, id=first.id, created=first.created, choices=[
                msgspec.structs.replace(c, index=i) for c in item.choices])
        usage = _sum_usage(usage_chunks)
        if first is not None and usage is not None:
            yield ChatChunk(id=first.id, model=first.model, created=first.created, choices=[], usage=usage)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in streams:
            await stream.aclose()
