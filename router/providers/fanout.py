"""``n`` for wire formats that answer one choice per call: n parallel calls merged into one answer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec

from models.schema import Route
from router.deadline import Deadline
from router.providers.base import ChunkStream
from router.types import ChatRequest, ChatResponse, Usage

MAX_FAN_OUT = 16  # n beyond this is refused: it multiplies cost and rate-limit use by n
Send = Callable[[ChatRequest, Route, Deadline], Awaitable[ChatResponse | ChunkStream]]


def _sum_usage(answers: list[ChatResponse]) -> Usage | None:
    usages = [a.usage for a in answers if a.usage is not None]
    if not usages:
        return None
    prompt = sum(u.prompt_tokens for u in usages)
    completion = sum(u.completion_tokens for u in usages)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


async def fan_out(send: Send, request: ChatRequest, route: Route, deadline: Deadline) -> ChatResponse:
    """n calls at once; choice i is call i's answer, usage is the sum (cost is what was really spent).
    One failure cancels the others and is raised as is, so dispatch retries the whole request."""
    one = msgspec.structs.replace(request, n=None)
    tasks = [asyncio.ensure_future(send(one, route, deadline)) for _ in range(request.n or 1)]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    answers = [r for r in results if isinstance(r, ChatResponse)]
    first = answers[0]
    choices = [msgspec.structs.replace(a.choices[0], index=i) for i, a in enumerate(answers)]
    return msgspec.structs.replace(first, choices=choices, usage=_sum_usage(answers))
