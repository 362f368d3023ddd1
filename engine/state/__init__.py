"""Shared state across replicas (``state: redis://…``): budgets, rate limits, circuits, cache writes,
run-time controls (the config overlay), experiment state and the feedback index.

Without ``state`` nothing here is built and ``redis`` is never imported: every replica runs on its local,
embedded state as before. :func:`build_state` is the one entry point; :class:`engine.state.hub.SharedState`
owns the Redis connection and the parts that use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.state.hub import SharedState


def build_state(settings: Any, metrics: Any, worker: str) -> SharedState | None:
    """The shared state of ``settings.state``, or None when it is not configured."""
    if settings.state is None:
        return None
    from engine.state.hub import SharedState

    return SharedState(settings, metrics, worker)
