"""A cached answer replayed as a stream: the same chunk shapes a live OpenAI stream has.

The chunking lives in :mod:`router.chunks` (the simulated provider streams through it too, and the
router may not import ``engine``); this is the engine's name for it.
"""

from __future__ import annotations

from router.chunks import CHUNK_CHARS, response_chunks, tool_call_deltas

replay_chunks = response_chunks

__all__ = ["CHUNK_CHARS", "replay_chunks", "tool_call_deltas"]
