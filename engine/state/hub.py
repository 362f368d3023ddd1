"""The shared-state parts of one engine, on one Redis connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from engine.budgets import LocalBudgetStore
from engine.state._redis import Connection
from engine.state.budgets import RedisBudgetStore
from engine.state.circuits import SharedCircuits
from engine.state.controls import SharedControls
from engine.state.experiments import SharedExperiments
from engine.state.feedback_index import FeedbackIndex
from engine.state.ratelimit import RedisRateLimiter
from engine.state.replication import CacheReplicator

log = logging.getLogger("thrifty.state")


def replica_id(data_dir: Path) -> str:
    """This data directory's name among the replicas: made once, kept in ``replica.id``."""
    path = data_dir / "replica.id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        data_dir.mkdir(parents=True, exist_ok=True)
        rid = uuid.uuid4().hex[:16]
        tmp = path.with_suffix(f".{uuid.uuid4().hex[:6]}.tmp")
        tmp.write_text(rid)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic create-if-absent: workers starting together agree on one id
        tmp.unlink()
        return path.read_text().strip()


class SharedState:
    def __init__(self, settings: Any, metrics: Any, worker: str) -> None:
        self.config = settings.state
        self.settings = settings
        self.metrics = metrics
        self.worker = worker
        self.replica = replica_id(settings.data_dir)
        self.conn = Connection(self.config, on_change=self._changed)
        self.rate_limiter = RedisRateLimiter(self.conn, settings.rate_limits, on_fallback=self._fallback)
        self.replicator: CacheReplicator | None = None
        self.circuits: SharedCircuits | None = None
        self.budget_store: RedisBudgetStore | None = None
        self.controls = SharedControls(self.conn, replica=self.replica) if self.config.shared_controls else None
        self.experiments = SharedExperiments(self.conn, replica=self.replica) if self.config.shared_controls else None
        self.feedback_index = FeedbackIndex(
            self.conn, on_dropped=lambda n: metrics.state_fallbacks.labels("feedback_index").inc(n))
        metrics.state_up.set(1)

    @property
    def degraded(self) -> bool:
        return not self.conn.up

    def _changed(self, up: bool) -> None:
        self.metrics.state_up.set(1 if up else 0)

    def _fallback(self, feature: str) -> None:
        self.metrics.state_fallbacks.labels(feature).inc()

    def make_budget_store(self, local: LocalBudgetStore, *, ttl_s: float) -> RedisBudgetStore:
        self.budget_store = RedisBudgetStore(self.conn, local, replica=self.replica, ttl_s=ttl_s,
                                             share=self.config.fallback_budget_share, on_fallback=self._fallback)
        return self.budget_store

    def start(self, cache: Any, breakers: Any, *, probe_ttl_s: float) -> None:
        """Start the background parts: health probing, cache replication, circuit subscription."""
        self.conn.start()
        if self.config.replicate_cache and self.replicator is None:
            self.replicator = CacheReplicator(
                self.conn, cache, replica=self.replica, cursor_path=Path(cache.store.path) / "replication.cursor",
                on_lag=self.metrics.replication_lag.observe,
                on_dropped=lambda n: self.metrics.state_fallbacks.labels("replication_dropped").inc(n))
            cache.listener = self.replicator
            self.replicator.start()
        if self.config.shared_circuits and self.circuits is None:
            self.circuits = SharedCircuits(self.conn, replica=self.worker, probe_ttl_s=probe_ttl_s)
            try:
                loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            self.circuits.start(breakers, loop)

    def stop_replication(self, cache: Any) -> None:
        if self.replicator is not None:
            cache.listener = None
            self.replicator.close()
            self.replicator = None

    async def aclose(self, cache: Any) -> None:
        if self.circuits is not None:
            await asyncio.to_thread(self.circuits.close)
            self.circuits = None
        if cache is not None:
            await asyncio.to_thread(self.stop_replication, cache)
        await self.conn.aclose()

    def close(self) -> None:
        self.feedback_index.close()
        if self.experiments is not None:
            self.experiments.close()
        self.conn.close()
