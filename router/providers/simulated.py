"""In-process provider with no network: plausible, deterministic answers for demos and benchmarks.

Every answer is labeled: the model is ``simulated/<model>``, ``system_fingerprint`` is
``thrifty-simulated`` and ids start with ``sim-``, so a simulated answer can never pass for a real one.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncGenerator
from typing import ClassVar

from models.schema import Route
from models.tokens import estimate_messages, estimate_tokens
from router.deadline import Deadline
from router.errors import UpstreamTimeout
from router.providers.base import ChunkStream
from router.providers.config import ProviderConfig
from router.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
    text_of,
)

FINGERPRINT = "thrifty-simulated"
_SENTENCES = (
    "The short answer depends on the details, but a careful approach works best here.",
    "Start from the inputs, check the assumptions, then apply the standard method.",
    "Verify the result against a simple example before relying on it in production.",
    "If the constraints change, revisit the first step rather than patching the last one.",
    "Most of the cost is in the first attempt; later refinements are cheap.",
    "A worked example usually makes the general rule easier to follow.",
    "Edge cases deserve a test of their own, especially empty and very large inputs.",
    "When in doubt, measure before and after the change.",
)


class SimulatedProvider:
    kind: ClassVar[str] = "simulated"
    __slots__ = ("config", "name")

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name

    def __repr__(self) -> str:
        return f"SimulatedProvider(name={self.name!r})"

    async def aclose(self) -> None:
        return None

    def _answer(self, request: ChatRequest, route: Route) -> tuple[str, str, random.Random, int]:
        prompt = "\n".join(text_of(m.content) for m in request.messages)
        digest = hashlib.blake2b(f"{route.model}\n{prompt}".encode(), digest_size=8).digest()
        rng = random.Random(int.from_bytes(digest, "big"))
        n = self.config.simulated.answer_words
        cap = request.max_completion_tokens or request.max_tokens
        question = text_of(request.messages[-1].content).strip().replace("\n", " ") if request.messages else ""
        if len(question) > 80:
            question = question[:77] + "..."
        parts = [f'[simulated {route.model}] A simulated answer to "{question}".']
        while sum(len(p.split()) for p in parts) < n:
            parts.append(rng.choice(_SENTENCES))
        text = " ".join(parts)
        if cap is not None:
            text = text[: max(1, cap * 4)]
        prompt_tokens = estimate_messages([text_of(m.content) for m in request.messages])
        return text, "sim-" + digest.hex(), rng, prompt_tokens

    async def _sleep(self, rng: random.Random, deadline: Deadline) -> None:
        low, high = self.config.simulated.latency_ms
        delay = rng.uniform(low, high) / 1000 if high > 0 else 0.0
        left = deadline.remaining()
        if left is not None and delay > left:
            await asyncio.sleep(left)
            raise UpstreamTimeout("simulated latency exceeds the deadline", provider=self.name)
        if delay:
            await asyncio.sleep(delay)

    async def send(self, request: ChatRequest, route: Route, deadline: Deadline) -> ChatResponse | ChunkStream:
        text, rid, rng, prompt_tokens = self._answer(request, route)
        completion = estimate_tokens(text)
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion,
                      total_tokens=prompt_tokens + completion)
        model = f"simulated/{route.model}"
        if request.stream:
            return ChunkStream(self._chunks(text, rid, model, usage, rng, deadline))
        await self._sleep(rng, deadline)
        return ChatResponse(
            id=rid, model=model, created=int(time.time()), system_fingerprint=FINGERPRINT, usage=usage,
            choices=[Choice(index=0, message=ResponseMessage(content=text), finish_reason="stop")],
        )

    async def _chunks(self, text: str, rid: str, model: str, usage: Usage, rng: random.Random,
                      deadline: Deadline) -> AsyncGenerator[ChatChunk, None]:
        await self._sleep(rng, deadline)
        created = int(time.time())
        step = max(1, self.config.simulated.chunk_chars)

        def chunk(delta: Delta, finish: str | None = None) -> ChatChunk:
            return ChatChunk(id=rid, model=model, created=created, system_fingerprint=FINGERPRINT,
                             choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)])

        yield chunk(Delta(role="assistant", content=""))
        for i in range(0, len(text), step):
            yield chunk(Delta(content=text[i : i + step]))
        yield chunk(Delta(), "stop")
        yield ChatChunk(id=rid, model=model, created=created, system_fingerprint=FINGERPRINT, choices=[], usage=usage)
