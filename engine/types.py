"""The engine's public request/response types.

The OpenAI-shaped wire types are defined in :mod:`router.types` (the router must read and write them and
may not import ``engine``); they are re-exported here as the public API, with the engine's own
:class:`Meta` and :class:`Completion`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from router.types import (
    CacheMode,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    ContentPart,
    Delta,
    FunctionCall,
    FunctionCallDelta,
    FunctionDef,
    ImagePart,
    ImageURL,
    Message,
    Policy,
    ResponseFormat,
    ResponseMessage,
    TextPart,
    ThriftyOptions,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)

CacheOutcome = Literal["exact", "hit", "miss", "bypass"]


class Meta(msgspec.Struct, kw_only=True):
    """What thrifty did for one request: the figures behind the ``x-thrifty-*`` headers."""

    request_id: str
    cache: CacheOutcome = "miss"
    model: str | None = None
    provider: str | None = None
    cost_usd: float = 0.0
    cost_estimated: bool = False
    saved_usd: float = 0.0
    overhead_ms: float = 0.0
    latency_ms: float = 0.0
    stages: dict[str, float] = {}  # milliseconds per pipeline stage
    similarity: float | None = None
    task: str | None = None
    attempts: int = 0
    budget: str | None = None  # a budget warning or the action taken
    simulated: bool = False
    complete: bool = True  # False for a stream that ended with an error
    state: str | None = None  # "degraded" while the shared state (Redis) is unreachable


class Completion(msgspec.Struct, kw_only=True):
    """The result of :meth:`Engine.complete`: the OpenAI-shaped response and thrifty's account of it."""

    response: ChatResponse
    meta: Meta

    @property
    def text(self) -> str:
        msg = self.response.choices[0].message if self.response.choices else None
        return (msg.content or "") if msg else ""


__all__ = [
    "CacheMode",
    "CacheOutcome",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ChunkChoice",
    "Completion",
    "ContentPart",
    "Delta",
    "FunctionCall",
    "FunctionCallDelta",
    "FunctionDef",
    "ImagePart",
    "ImageURL",
    "Message",
    "Meta",
    "Policy",
    "ResponseFormat",
    "ResponseMessage",
    "TextPart",
    "ThriftyOptions",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]
