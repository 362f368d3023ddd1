"""In-process provider with no network: plausible, deterministic answers for demos, tests and benchmarks.

It exercises agent code the way a real model would: with ``tools`` (and a ``tool_choice`` that allows
them) it answers with a tool call whose arguments validate against the tool's JSON schema; with
``response_format`` it answers JSON that validates against the format's schema; ``n`` gives n different
choices; streamed, it sends OpenAI's chunk shapes (tool calls with id and name first, arguments in
pieces). With ``tool_choice`` ``auto`` it answers in text once the last message is a tool result, so an
agent loop ends.

Every answer is labeled: the model is ``simulated/<model>``, ``system_fingerprint`` is
``thrifty-simulated``, ids start with ``sim-`` (tool-call ids with ``call_sim_``), so a simulated answer
can never pass for a real one.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncGenerator
from typing import ClassVar

import msgspec

from models.schema import Route
from models.tokens import estimate_messages, estimate_tokens
from router.chunks import response_chunks
from router.deadline import Deadline
from router.errors import UpstreamTimeout
from router.providers._fields import FieldGate, unsupported
from router.providers.base import ChunkStream
from router.providers.config import ProviderConfig
from router.providers.embeddings import Embedded, labelled_vector
from router.providers.schema_instance import instance
from router.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FunctionCall,
    ResponseMessage,
    Tool,
    ToolCall,
    Usage,
    text_of,
)

FINGERPRINT = "thrifty-simulated"
_json = msgspec.json.Encoder()
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}
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
    __slots__ = ("_gate", "config", "name")

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self._gate = FieldGate(self.kind)

    def __repr__(self) -> str:
        return f"SimulatedProvider(name={self.name!r})"

    async def aclose(self) -> None:
        return None

    async def embed(self, inputs: list[str], model: str, dimensions: int | None, deadline: Deadline, *,
                    native: int = 0, user: str | None = None) -> Embedded:
        """Deterministic labelled vectors (model ``simulated/<model>``): not semantic, never mistaken for real."""
        dims = dimensions or native or 256
        return Embedded(vectors=[labelled_vector(model, text, dims) for text in inputs],
                        prompt_tokens=sum(estimate_tokens(t) for t in inputs), model=f"simulated/{model}")

    async def send(self, request: ChatRequest, route: Route, deadline: Deadline) -> ChatResponse | ChunkStream:
        self._gate.check(request, self.name)
        response, rng = self._respond(request, route)
        if request.stream:
            return ChunkStream(self._chunks(response, rng, deadline))
        await self._sleep(rng, deadline)
        return response

    # ------------------------------------------------------------------------------------------ answer
    def _respond(self, request: ChatRequest, route: Route) -> tuple[ChatResponse, random.Random]:
        prompt = "\n".join(text_of(m.content) for m in request.messages)
        digest = hashlib.blake2b(f"{route.model}\n{prompt}".encode(), digest_size=8).digest()
        seed = int.from_bytes(digest, "big")
        rid = "sim-" + digest.hex()
        choices = [self._choice(i, request, route, random.Random(seed + i), rid) for i in range(request.n or 1)]
        prompt_tokens = estimate_messages([text_of(m.content) for m in request.messages])
        completion = sum(_tokens_of(c.message) for c in choices)
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion,
                      total_tokens=prompt_tokens + completion)
        response = ChatResponse(id=rid, model=f"simulated/{route.model}", created=int(time.time()),
                                system_fingerprint=FINGERPRINT, usage=usage, choices=choices)
        return response, random.Random(seed)

    def _choice(self, i: int, request: ChatRequest, route: Route, rng: random.Random, rid: str) -> Choice:
        tool = self._pick_tool(request, rng)
        if tool is not None:
            args = instance(tool.function.parameters or _EMPTY_PARAMETERS, rng)
            call = ToolCall(id=f"call_sim_{rid[4:]}_{i}",
                            function=FunctionCall(name=tool.function.name, arguments=_json.encode(args).decode()))
            return Choice(index=i, message=ResponseMessage(tool_calls=[call]), finish_reason="tool_calls")
        text, cut = self._text(i, request, route, rng)
        rf = request.response_format
        if rf is not None and rf.type != "text":  # JSON is never cut: a truncated object would not parse
            cut = False
            if rf.type == "json_object":
                text = _json.encode({"answer": text, "simulated": True}).decode()
            else:
                schema = (rf.json_schema or {}).get("schema") or {"type": "object"}
                text = _json.encode(instance(schema, rng)).decode()
        return Choice(index=i, message=ResponseMessage(content=text), finish_reason="length" if cut else "stop")

    def _pick_tool(self, request: ChatRequest, rng: random.Random) -> Tool | None:
        """The tool to call, or None for a text answer (what a model would do under this tool_choice)."""
        tools, choice = request.tools, request.tool_choice
        if not tools or choice == "none":
            return None
        if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            name = choice["function"].get("name")
            for tool in tools:
                if tool.function.name == name:
                    return tool
            raise unsupported("tool_choice", self.name, self.kind, f"no tool named {name!r} in tools")
        if choice in (None, "auto") and request.messages and request.messages[-1].role in ("tool", "function"):
            return None  # the tool answered: a model would now reply in words, ending the agent loop
        return rng.choice(tools)

    def _text(self, i: int, request: ChatRequest, route: Route, rng: random.Random) -> tuple[str, bool]:
        """The prose answer, and whether max_tokens cut it (finish_reason ``length``, as from a model)."""
        question = text_of(request.messages[-1].content).strip().replace("\n", " ") if request.messages else ""
        if len(question) > 80:
            question = question[:77] + "..."
        which = f" (choice {i})" if i else ""
        parts = [f'[simulated {route.model}] A simulated answer{which} to "{question}".']
        words = self.config.simulated.answer_words
        while sum(len(p.split()) for p in parts) < words:
            parts.append(rng.choice(_SENTENCES))
        text = " ".join(parts)
        cap = request.max_completion_tokens or request.max_tokens
        if cap is None or len(text) <= max(1, cap * 4):
            return text, False
        return text[: max(1, cap * 4)], True

    # ------------------------------------------------------------------------------------------ timing
    async def _sleep(self, rng: random.Random, deadline: Deadline) -> None:
        low, high = self.config.simulated.latency_ms
        delay = rng.uniform(low, high) / 1000 if high > 0 else 0.0
        left = deadline.remaining()
        if left is not None and delay > left:
            await asyncio.sleep(left)
            raise UpstreamTimeout("simulated latency exceeds the deadline", provider=self.name)
        if delay:
            await asyncio.sleep(delay)

    async def _chunks(self, response: ChatResponse, rng: random.Random,
                      deadline: Deadline) -> AsyncGenerator[ChatChunk, None]:
        await self._sleep(rng, deadline)
        # Usage always comes last, as from a real upstream asked for it; dispatch passes that chunk on
        # only to a caller that asked (stream_options.include_usage).
        for chunk in response_chunks(response, include_usage=True, chunk_chars=self.config.simulated.chunk_chars):
            yield chunk


def _tokens_of(message: ResponseMessage) -> int:
    calls = message.tool_calls or ()
    return estimate_tokens(message.content or "") + sum(estimate_tokens(c.function.arguments) for c in calls)
