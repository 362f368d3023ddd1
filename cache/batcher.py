"""Micro-batching: concurrent async callers share one forward pass of the encoder.

Callers in one event loop ``await batcher.encode_one(text)``; the first caller of a batch starts a
drain task that waits up to ``max_wait_s`` for company (or until ``max_batch`` texts are queued), runs
one ``encoder.encode`` in a worker thread, and resolves every caller's future with its row. While a
forward pass runs, new callers queue up and go together into the next one.
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np

from cache.encoder import Encoder


class MicroBatcher:
    def __init__(self, encoder: Encoder, max_batch: int = 32, max_wait_s: float = 0.001):
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._drain: asyncio.Task[None] | None = None
        self._full = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0  # forward passes run so far: observable batching

    async def encode_one(self, text: str) -> np.ndarray:
        """The unit-norm float32 vector of ``text`` (shape ``(dim,)``)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # asyncio primitives bind to one loop; a new loop gets fresh ones
            self._loop, self._full, self._drain, self._pending = loop, asyncio.Event(), None, []
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((text, fut))
        if len(self._pending) >= self.max_batch:
            self._full.set()
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._run())
        return await fut

    async def _run(self) -> None:
        if len(self._pending) < self.max_batch:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.max_wait_s)
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self._full.clear()
            await self._encode(batch)

    async def _encode(self, batch: list[tuple[str, asyncio.Future[np.ndarray]]]) -> None:
        self.batches += 1
        try:
            vectors = await asyncio.to_thread(self.encoder.encode, [t for t, _ in batch])
        except Exception as e:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for row, (_, fut) in zip(vectors, batch, strict=True):
            if not fut.done():  # a caller may have been cancelled meanwhile
                fut.set_result(row)
