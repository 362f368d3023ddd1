"""Hard constraints, applied before any scoring: what a request needs and what the caller allows.

``requirements(request)`` reads the request once (prompt tokens, output cap, needed capabilities);
``Constraints`` carries what the caller decides (tenant lists, cost ceiling, remaining budget, open
circuits). The vectorised checks themselves live with the precomputed tables in ``router.table``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from models.tokens import estimate_messages
from router.types import ChatRequest, Policy, has_images, text_of

CAPABILITY_NAMES = ("tools", "vision", "json_mode", "reasoning", "streaming")


@dataclass(frozen=True, slots=True)
class Constraints:
    """What the caller allows for one request. Empty allow list = every model.

    ``is_open(deployment) -> bool`` is the breaker's view (``deployment`` = ``"provider/model"``);
    ``open_deployments`` is the same as a set, for callers that have one.
    """

    tenant: str | None = None
    allow_models: Collection[str] = ()
    deny_models: Collection[str] = ()
    max_cost_usd: float | None = None
    budget_remaining_usd: float | None = None
    require: Collection[str] = ()  # capabilities needed beyond what the request implies
    is_open: Callable[[str], bool] | None = None
    open_deployments: Collection[str] = field(default_factory=frozenset)
    policy: Policy | None = None
    quality_target: float | None = None
    task: str | None = None  # a task hint that overrides the classifier

    def __post_init__(self) -> None:
        unknown = [c for c in self.require if c not in CAPABILITY_NAMES]
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; known: {', '.join(CAPABILITY_NAMES)}")
        for name in ("max_cost_usd", "budget_remaining_usd"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")


NO_CONSTRAINTS = Constraints()


@dataclass(frozen=True, slots=True)
class Requirements:
    """What one request needs from a model, read from the request itself."""

    prompt_tokens: int
    max_output: int | None  # the request's own cap on output tokens
    capabilities: tuple[str, ...]
    text: str  # the last user turn (for explanations)


def requirements(request: ChatRequest, extra: Collection[str] = ()) -> Requirements:
    texts = [text_of(m.content) for m in request.messages]
    if request.tools:
        texts.append(str([t.function.name for t in request.tools]))
    caps: list[str] = []
    if request.tools:
        caps.append("tools")
    if has_images(request):
        caps.append("vision")
    if request.response_format is not None and request.response_format.type != "text":
        caps.append("json_mode")
    for c in extra:
        if c not in caps:
            caps.append(c)
    out = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
    last_user = next((t for m, t in zip(reversed(request.messages), reversed(texts[: len(request.messages)]), strict=True)
                      if m.role == "user"), "")
    return Requirements(estimate_messages(texts), out, tuple(caps), last_user)
