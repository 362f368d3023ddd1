"""Prometheus metrics, one registry per Engine (no module-level state).

With several proxy workers, ``thrifty serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start
and ``/metrics`` aggregates every worker's values through prometheus-client's multiprocess collector.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

_STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                  0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def label(value: object) -> str:
    """A label value: ``"none"`` for a missing one (prometheus-client would write ``None`` or an empty
    string, which PromQL cannot tell from an absent label)."""
    return str(value) if value is not None and value != "" else "none"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("thrifty_requests", "Chat requests handled",
                                ["cache", "model", "provider", "status"], registry=r)
        self.cache_outcomes = Counter("thrifty_cache_outcomes", "Cache outcomes (exact, hit, miss, bypass)",
                                      ["outcome"], registry=r)
        self.spend = Counter("thrifty_spend_usd", "Spend in USD", ["tenant", "model", "provider"], registry=r)
        self.saved = Counter("thrifty_saved_usd", "USD saved by cache hits", ["tenant"], registry=r)
        self.tokens = Counter("thrifty_tokens", "Tokens by kind", ["kind", "model"], registry=r)
        self.stage = Histogram("thrifty_stage_seconds", "Latency per pipeline stage", ["stage"],
                               buckets=_STAGE_BUCKETS, registry=r)
        self.overhead = Histogram("thrifty_overhead_seconds", "Latency thrifty adds (all but upstream)",
                                  buckets=_STAGE_BUCKETS, registry=r)
        self.upstream_errors = Counter("thrifty_upstream_errors", "Failed upstream attempts",
                                       ["deployment", "kind"], registry=r)
        self.stream_bad_events = Counter("thrifty_stream_bad_events", "Undecodable SSE events skipped",
                                         ["deployment"], registry=r)
        self.open_circuits = Gauge("thrifty_open_circuits", "Deployments whose circuit is open",
                                   registry=r, multiprocess_mode="max")
        self.budget_warnings = Counter("thrifty_budget_warnings", "Soft budget limits crossed",
                                       ["subject", "period"], registry=r)
        self.budget_actions = Counter("thrifty_budget_actions", "Hard budget limits enforced",
                                      ["subject", "action"], registry=r)
        # Experiments (engine.experiments): labels are experiment and arm names from the config or the admin
        # API (at most 32 experiments of at most 8 arms), never anything a caller sends.
        self.experiment_requests = Counter("thrifty_experiment_requests", "Requests per experiment arm",
                                           ["experiment", "arm", "outcome"], registry=r)
        self.experiment_cost = Counter("thrifty_experiment_cost_usd", "Spend per experiment arm in USD",
                                       ["experiment", "arm"], registry=r)
        self.experiment_tokens = Counter("thrifty_experiment_tokens", "Tokens per experiment arm",
                                         ["experiment", "arm", "kind"], registry=r)
        self.experiment_latency = Histogram("thrifty_experiment_latency_seconds",
                                            "Latency per experiment arm (total, added by thrifty)",
                                            ["experiment", "arm", "kind"], buckets=_STAGE_BUCKETS, registry=r)
        self.experiment_guard_stops = Counter("thrifty_experiment_guard_stops",
                                              "Experiment arms stopped by a guard rail", ["experiment", "arm"],
                                              registry=r)
        # Shared state (engine/state): Redis reachable?, what ran on local state instead, replication lag.
        self.state_up = Gauge("thrifty_state_up", "1 while the shared state (Redis) answers, 0 while degraded",
                              registry=r, multiprocess_mode="min")
        self.state_fallbacks = Counter("thrifty_state_fallbacks", "Steps run on local state because Redis was down",
                                       ["feature"], registry=r)
        self.replication_lag = Histogram("thrifty_replication_lag_seconds",
                                         "Age of another replica's cache write when applied here", registry=r,
                                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30))
        self.rate_limited = Counter("thrifty_rate_limited", "Requests refused by a rate limit",
                                    ["subject", "type"], registry=r)
        self._open_circuits_fn: Callable[[], int] | None = None

    def watch_open_circuits(self, fn: Callable[[], int]) -> None:
        self._open_circuits_fn = fn

    def render(self) -> bytes:
        if self._open_circuits_fn is not None:
            self.open_circuits.set(self._open_circuits_fn())
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
            return generate_latest(reg)
        return generate_latest(self.registry)
