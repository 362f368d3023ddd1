"""Experiments: split a slice of traffic between arms (a model, a provider route, a routing policy or a cache
setting), keep each end user on one arm, guard the arms, and promote or roll back in one step.

Configured under ``experiments:`` (or created with ``POST /admin/experiments``)::

    experiments:
      - name: mini-vs-haiku
        control: a
        arms:
          - {name: a, weight: 90}                       # no change: today's setting
          - {name: b, weight: 10, model: claude-haiku-4.5}
        target: {tenants: [acme]}                       # empty lists match everything
        stickiness: user                                # user | tenant | conversation
        guard: {max_error_rate: 0.2, max_p99_ms: 8000, window_s: 60, min_requests: 20}

**Assignment** is a pure function of the experiment's name, the tenant and the stickiness value: the
first 8 bytes of ``blake2b(name \\0 tenant \\0 value)`` as a fraction of 2^64 pick an arm by cumulative
weight, so every worker and every restart agrees. The stickiness value is, for ``user``, the request's
``user`` (OpenAI) / ``metadata.user_id`` (Anthropic) or ``safety_identifier``; for ``tenant``, the caller's
tenant; for ``conversation``, ``metadata.conversation_id`` when given, else the text of the conversation's
first user message. A request without a user id under ``user`` stickiness falls back to the conversation.
A request is in at most one experiment: the first running one (in config order, then the admin API's)
whose target matches it. ``target.tasks`` matches the request's task hint (``thrifty.task`` /
``x-thrifty-task``), since assignment happens before the router classifies the prompt.

**Cache**: an arm that changes what answers (``model``, ``route``, ``policy``) gets a cache partition of its
own (``cache.scope(..., variant=)``); an arm that changes only cache settings shares its partition with
control. An arm's settings win over the request's own ``thrifty`` options.

**State** (stopped arms, weights, promotion) lives in ``<data_dir>/experiments.json``, written under an
exclusive lock and re-read by every worker at most once a second, so it survives restarts and reaches
every worker. Every change is audited (``engine.audit``).

With replicas on one Redis (``state``), every change is also offered to the other replicas and theirs
are taken within about a second (``engine.state.experiments``: each experiment converges on its latest
change). Guard-rail windows stay per worker.

**Guard rails**: each non-control arm keeps a sliding window of its requests in each worker; once the window
holds ``min_requests`` and the share of 5xx answers passes ``max_error_rate`` (or the 99th percentile of
latency passes ``max_p99_ms``), the arm is stopped: its traffic returns to control, the event is logged,
audited, counted in ``thrifty_experiment_guard_stops`` and shown by the admin route and the report.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np

from engine._experiment_config import (
    MAX_ARMS,
    NAME_RE,
    Arm,
    ArmCache,
    ExperimentConfig,
    Guard,
    JudgeConfig,
    Target,
)
from engine.errors import ConflictError, RequestError
from router.types import ChatRequest, text_of

if TYPE_CHECKING:
    from engine.pipeline import Ctx

log = logging.getLogger("thrifty.experiments")

MAX_EXPERIMENTS = 32  # bounds the label sets of the experiment metrics
Status = Literal["running", "stopped", "promoted", "rolled_back"]


# ---------------------------------------------------------------------------------------------- state
class GuardEvent(msgspec.Struct, frozen=True):
    ts: float
    arm: str
    reason: str
    window_requests: int
    error_rate: float
    p99_ms: float | None


class ExperimentState(msgspec.Struct, omit_defaults=True):
    status: Status = "running"
    weights: dict[str, float] | None = None  # replaces the config's weights when set
    stopped_arms: dict[str, str] = {}  # arm -> why (guard rail or operator)
    winner: str | None = None  # the promoted arm
    updated: float = 0.0
    events: list[GuardEvent] = []


class StateFile(msgspec.Struct, omit_defaults=True):
    state: dict[str, ExperimentState] = {}
    defined: dict[str, ExperimentConfig] = {}  # experiments created through the admin API


class SharedDoc(msgspec.Struct, omit_defaults=True):
    """One experiment as replicas share it (``engine.state.experiments``)."""

    state: ExperimentState
    defined: ExperimentConfig | None = None  # for an experiment created through the admin API
    replica: str = ""


_shared_dec = msgspec.json.Decoder(SharedDoc)


class ExperimentNotFound(RequestError):
    status = 404
    code = "not_found"


class Assignment(msgspec.Struct, frozen=True):
    experiment: str
    arm: Arm
    variant: str | None  # the cache partition's variant (None: shared with requests outside the experiment)


_state_dec = msgspec.json.Decoder(StateFile)
_enc = msgspec.json.Encoder(order="deterministic")


class _Store:
    """The state file: read whole, changed under ``flock`` (several workers), replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def stamp(self) -> tuple[int, int, int]:
        """Changes with every replace (a new inode), whatever the file system's time resolution."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def read(self) -> StateFile:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return StateFile()
        try:
            return _state_dec.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("experiments: %s is unreadable (%s); starting from the config's settings", self.path, exc)
            return StateFile()

    def update(self, fn: Callable[[StateFile], Any]) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self.read()
                out = fn(data)
                tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(msgspec.json.format(_enc.encode(data), indent=2))
                os.replace(tmp, self.path)
                return out
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------- guard
class _Window:
    """One arm's recent requests in this worker: (monotonic time, failed, latency ms)."""

    __slots__ = ("errors", "items", "seen")

    def __init__(self) -> None:
        self.items: deque[tuple[float, bool, float]] = deque()
        self.errors = 0
        self.seen = 0

    def add(self, now: float, failed: bool, latency_ms: float, window_s: float) -> None:
        self.items.append((now, failed, latency_ms))
        self.errors += failed
        self.seen += 1
        cutoff = now - window_s
        while self.items and self.items[0][0] < cutoff:
            self.errors -= self.items.popleft()[1]

    def p99(self) -> float:
        return float(np.percentile(np.fromiter((x[2] for x in self.items), dtype=np.float64), 99))


def _verdict(w: _Window, guard: Guard) -> tuple[str, float, float | None] | None:
    n = len(w.items)
    if n < guard.min_requests:
        return None
    rate = w.errors / n
    if guard.max_error_rate is not None and rate > guard.max_error_rate:
        return f"error rate {rate:.1%} over the last {guard.window_s:g} s passed the limit {guard.max_error_rate:.1%}", rate, None
    # The percentile is recomputed every 8th request (and at the first judgeable one): O(n) work, not per request.
    if guard.max_p99_ms is not None and (w.seen % 8 == 0 or n == guard.min_requests):
        p99 = w.p99()
        if p99 > guard.max_p99_ms:
            return f"p99 latency {p99:.0f} ms over the last {guard.window_s:g} s passed the limit {guard.max_p99_ms:g} ms", rate, p99
    return None


# ---------------------------------------------------------------------------------------------- the set
class _Live(msgspec.Struct, frozen=True):
    """A running experiment, prepared for assignment: cumulative bounds and the arm each leads to."""

    cfg: ExperimentConfig
    bounds: tuple[float, ...]  # cumulative weight fractions, one per arm
    lead_to: tuple[Arm, ...]  # the arm served for each slot (a stopped arm leads to control)
    key: bytes  # the name, encoded once


def _prepare(cfg: ExperimentConfig, st: ExperimentState) -> _Live | None:
    if st.status == "stopped":
        return None
    control = cfg.arm(cfg.control)
    if st.status == "promoted" and st.winner is not None:
        weights = {st.winner: 1.0}
    elif st.status == "rolled_back":
        weights = {cfg.control: 1.0}
    else:
        weights = st.weights if st.weights is not None else {a.name: a.weight for a in cfg.arms}
    total = sum(weights.get(a.name, 0.0) for a in cfg.arms)
    if total <= 0:
        weights, total = {cfg.control: 1.0}, 1.0
    acc, bounds, lead = 0.0, [], []
    for a in cfg.arms:
        acc += weights.get(a.name, 0.0) / total
        bounds.append(acc)
        lead.append(control if a.name in st.stopped_arms else a)
    bounds[-1] = 1.0 + 1e-12
    return _Live(cfg, tuple(bounds), tuple(lead), cfg.name.encode())


def sticky_value(cfg: ExperimentConfig, request: Any, tenant: str) -> str:
    """What keeps a caller on one arm (module docstring)."""
    if cfg.stickiness == "tenant":
        return "t:" + tenant
    if cfg.stickiness == "user":
        user = request.user or getattr(request, "safety_identifier", None)
        if user:
            return "u:" + user
    meta = request.metadata
    if meta and meta.get("conversation_id"):
        return "c:" + meta["conversation_id"]
    first = next((m for m in request.messages if m.role == "user"), None)
    return "f:" + (text_of(first.content) if first is not None else "")


def bucket(name: bytes, tenant: str, value: str) -> float:
    """The request's point in [0, 1): deterministic in (experiment, tenant, stickiness value)."""
    data = b"%s\0%s\0%s" % (name, tenant.encode("utf-8", "surrogatepass"), value.encode("utf-8", "surrogatepass"))
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") / 2.0**64


class ExperimentSet:
    """Every experiment of one Engine: assignment on the request path, guard rails, and the admin operations."""

    def __init__(self, configs: Iterable[ExperimentConfig], data_dir: Path, *, audit: Any = None,
                 metrics: Any = None, validate: Callable[[ExperimentConfig], None] | None = None,
                 cache_enabled: bool = True, default_namespace: Callable[[str], str] | None = None,
                 judge: Any = None) -> None:
        self.configured = tuple(configs)
        names = [c.name for c in self.configured]
        if len(set(names)) != len(names):
            raise ValueError(f"experiments: duplicate experiment names in {names}")
        if len(names) > MAX_EXPERIMENTS:
            raise ValueError(f"experiments: at most {MAX_EXPERIMENTS} experiments, got {len(names)}")
        self._validate = validate or (lambda cfg: None)
        for cfg in self.configured:
            self._validate(cfg)
        self.audit, self.metrics = audit, metrics
        self.cache_enabled = cache_enabled
        self._default_ns = default_namespace or (lambda tenant: "default")
        self.store = _Store(data_dir / "experiments.json")
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}
        self.judge = judge  # engine._experiment_judge.Judge, or None (no engine: the CLI's read-only view)
        self._originals: dict[str, ChatRequest] = {}  # request id -> the request before its arm, when sampled
        self.shared: Any = None  # engine.state.experiments.SharedExperiments with replicas on one Redis
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self.live: tuple[_Live, ...] = ()
        self.data = StateFile()
        self._reload()

    # ------------------------------------------------------------------------------------------ reading
    def _reload(self) -> None:
        stamp = self.store.stamp()
        self._checked = time.monotonic()
        if stamp == self._stamp:
            return
        data = self.store.read()
        self._stamp = stamp
        self.data = data
        live = []
        for cfg in self.all_configs():
            prepared = _prepare(cfg, data.state.get(cfg.name, ExperimentState()))
            if prepared is not None:
                live.append(prepared)
        self.live = tuple(live)

    def all_configs(self) -> list[ExperimentConfig]:
        known = {c.name for c in self.configured}
        return [*self.configured, *(c for n, c in self.data.defined.items() if n not in known)]

    def config(self, name: str) -> ExperimentConfig:
        for cfg in self.all_configs():
            if cfg.name == name:
                return cfg
        raise ExperimentNotFound(f"no experiment named {name[:80]!r}", param="name")

    def state(self, name: str) -> ExperimentState:
        self.config(name)
        return self.data.state.get(name, ExperimentState())

    def due(self) -> bool:
        """A reload check, at most once a second: whether it found running experiments (another worker may
        have created one). The request path asks this only while no experiment is running here."""
        if time.monotonic() - self._checked <= 1.0:
            return False
        self._reload()
        return bool(self.live)

    def refresh(self) -> None:
        """Pick up changes other workers made (the request path does this at most once a second)."""
        self._reload()

    # ------------------------------------------------------------------------------------------ request path
    def assign(self, request: Any, tenant: str, key_name: str | None, options: Any) -> Assignment | None:
        if time.monotonic() - self._checked > 1.0:
            self._reload()
        for live in self.live:
            t = live.cfg.target
            if t.tenants and tenant not in t.tenants:
                continue
            if t.keys and key_name not in t.keys:
                continue
            if t.namespaces and (options.namespace or self._default_ns(tenant)) not in t.namespaces:
                continue
            if t.tasks and options.task not in t.tasks:
                continue
            x = bucket(live.key, tenant, sticky_value(live.cfg, request, tenant))
            for bound, arm in zip(live.bounds, live.lead_to, strict=True):
                if x < bound:
                    return Assignment(live.cfg.name, arm, f"{live.cfg.name}/{arm.name}" if arm.answers_differ else None)
        return None

    def apply(self, ctx: Ctx) -> None:
        """Assign ``ctx``'s request and put its arm's settings on it (before the cache lookup)."""
        a = self.assign(ctx.request, ctx.tenant, ctx.key_name, ctx.options)
        if a is None:
            return
        arm = a.arm
        ctx.experiment, ctx.arm, ctx.variant, ctx.prefer_provider = a.experiment, arm.name, a.variant, arm.route
        cfg = self._live_config(a.experiment)
        if (cfg is not None and cfg.judge is not None and self.judge is not None and arm.name != cfg.control
                and len(self._originals) < 1024 and self.judge.wants(cfg.judge)):
            self._originals[ctx.meta.request_id] = ctx.request
        if arm.model is not None:
            ctx.request = msgspec.structs.replace(ctx.request, model=arm.model)
        changes: dict[str, Any] = {}
        if arm.policy is not None:
            changes["policy"] = arm.policy
        c = arm.cache
        if c is not None:
            if c.threshold is not None:
                changes["threshold"] = c.threshold
            if c.ttl_s is not None:
                changes["ttl"] = c.ttl_s
            if c.mode is not None and self.cache_enabled:
                ctx.mode = c.mode
        if changes:
            ctx.options = msgspec.structs.replace(ctx.options, **changes)

    def _live_config(self, name: str) -> ExperimentConfig | None:
        return next((x.cfg for x in self.live if x.cfg.name == name), None)

    def observe(self, ctx: Ctx, status: int, usage: Any, response: Any = None) -> None:
        """Per-arm metrics, the guard rails and the judge's sample, for a request that was in an experiment."""
        name, arm, m = ctx.experiment, ctx.arm, ctx.meta
        assert name is not None and arm is not None
        original = self._originals.pop(m.request_id, None) if self._originals else None
        if original is not None and status == 200 and response is not None and m.cache not in ("exact", "hit"):
            cfg = self._live_config(name)
            if cfg is not None and self.judge is not None:
                self.judge.submit(cfg, ctx, original, response)
        mt = self.metrics
        if mt is not None:
            outcome = ("error" if status >= 500 else "rejected" if status >= 400
                       else "hit" if m.cache in ("exact", "hit") else "ok")
            mt.experiment_requests.labels(name, arm, outcome).inc()
            if m.cost_usd:
                mt.experiment_cost.labels(name, arm).inc(m.cost_usd)
            if usage is not None:
                mt.experiment_tokens.labels(name, arm, "prompt").inc(usage.prompt_tokens)
                mt.experiment_tokens.labels(name, arm, "completion").inc(usage.completion_tokens)
            mt.experiment_latency.labels(name, arm, "total").observe(m.latency_ms / 1e3)
            mt.experiment_latency.labels(name, arm, "added").observe(m.overhead_ms / 1e3)
        self._guard(name, arm, status >= 500, m.latency_ms)

    def _guard(self, name: str, arm: str, failed: bool, latency_ms: float) -> None:
        live = next((x for x in self.live if x.cfg.name == name), None)
        if live is None or arm == live.cfg.control or all(a.name != arm for a in live.lead_to):
            return  # control is never stopped; a stopped arm's last requests in flight judge nothing
        guard = live.cfg.guard
        if guard.max_error_rate is None and guard.max_p99_ms is None:
            return
        with self._lock:
            w = self._windows.get((name, arm))
            if w is None:
                w = self._windows[(name, arm)] = _Window()
            w.add(time.monotonic(), failed, latency_ms, guard.window_s)
            verdict = _verdict(w, guard)
            if verdict is None:
                return
            reason, rate, p99 = verdict
            event = GuardEvent(time.time(), arm, reason, len(w.items), rate, p99)
            self._windows.pop((name, arm), None)
            # Traffic returns to control now, in this worker; the state file and the audit (a lock and an
            # fsync) are written off the request path, and every worker reads the stop from there.
            st = msgspec.structs.replace(self.data.state.get(name, ExperimentState()))
            st.stopped_arms = {**st.stopped_arms, arm: reason}
            now_live = _prepare(live.cfg, st)
            self.live = tuple(now_live if x.cfg.name == name and now_live is not None else x for x in self.live)
        threading.Thread(target=self._stop_arm, args=(name, arm, reason), kwargs={"actor": "guard", "event": event},
                         name="thrifty-experiment-guard", daemon=True).start()

    # ------------------------------------------------------------------------------------------ changes
    def _change(self, name: str, action: str, actor: str, fn: Callable[[ExperimentState], None],
                detail: str | None = None) -> ExperimentState:
        self.config(name)  # 404 for an unknown name

        def edit(data: StateFile) -> tuple[ExperimentState, ExperimentState]:
            old = data.state.get(name, ExperimentState())
            new = msgspec.structs.replace(old, stopped_arms=dict(old.stopped_arms), events=list(old.events),
                                          weights=dict(old.weights) if old.weights is not None else None)
            fn(new)
            new.updated = time.time()
            data.state[name] = new
            return old, new

        old, new = self.store.update(edit)
        self._stamp = None
        self._reload()
        self._publish(name)
        if self.audit is not None:
            self.audit.record(actor, f"experiment.{action}", name, msgspec.to_builtins(_summary(old)),
                              msgspec.to_builtins(_summary(new)), detail=detail)
        return new

    # ------------------------------------------------------------------------------------------ replicas
    def _publish(self, name: str) -> None:
        """Offer ``name``'s state (and admin-made definition) to the other replicas."""
        if self.shared is None:
            return
        st = self.data.state.get(name)
        if st is not None:
            doc = SharedDoc(st, self.data.defined.get(name), self.shared.replica)
            self.shared.publish(name, st.updated, _enc.encode(doc))

    def adopt_shared(self) -> list[str]:
        """Take every experiment whose shared state is newer than this replica's (another replica changed
        it), into the state file; the names taken. Run off the request path, once a second."""
        got = self.shared.read() if self.shared is not None else None
        if not got:
            return []
        docs: dict[str, SharedDoc] = {}
        for name, raw in got.items():
            try:
                doc = _shared_dec.decode(raw)
                if doc.defined is not None:
                    self._validate(doc.defined)
            except (msgspec.DecodeError, msgspec.ValidationError, RequestError) as exc:
                log.error("experiments: the shared state of %r is not usable here (%s); ignored", name[:80], exc)
                continue
            mine = self.data.state.get(name)
            if mine is None or doc.state.updated > mine.updated:
                docs[name] = doc
        if not docs:
            return []

        def fn(data: StateFile) -> list[tuple[str, ExperimentState | None, SharedDoc]]:
            taken = []
            for name, doc in docs.items():
                old = data.state.get(name)
                if old is not None and old.updated >= doc.state.updated:
                    continue  # another worker of this data dir took it, or a newer change was made here
                if doc.defined is not None:
                    data.defined[name] = doc.defined
                data.state[name] = doc.state
                taken.append((name, old, doc))
            return taken

        taken = self.store.update(fn)
        self._stamp = None
        self._reload()
        for name, old, doc in taken:
            log.warning("experiment %s: state changed on replica %s taken here (%s)", name, doc.replica,
                        doc.state.status)
            if self.audit is not None:
                self.audit.record(f"replica {doc.replica}", "experiment.replicated", name,
                                  None if old is None else msgspec.to_builtins(_summary(old)),
                                  msgspec.to_builtins(_summary(doc.state)))
        return [name for name, _, _ in taken]

    def _stop_arm(self, name: str, arm: str, reason: str, *, actor: str, event: GuardEvent | None = None) -> None:
        def fn(st: ExperimentState) -> None:
            st.stopped_arms[arm] = reason
            if event is not None:
                st.events.append(event)

        log.warning("experiment %s: arm %s stopped (%s); its traffic returns to control", name, arm, reason)
        if self.metrics is not None and actor == "guard":
            self.metrics.experiment_guard_stops.labels(name, arm).inc()
        self._change(name, "guard_stop" if actor == "guard" else "stop_arm", actor, fn, detail=reason)

    def create(self, raw: Any, actor: str = "admin") -> ExperimentConfig:
        try:
            cfg = msgspec.convert(raw, ExperimentConfig)
        except msgspec.ValidationError as exc:
            raise RequestError(f"invalid experiment: {exc}") from exc
        self._validate(cfg)
        if cfg.name in {c.name for c in self.configured}:
            raise ConflictError(f"experiment {cfg.name} is defined in the config file; change it there")

        def fn(data: StateFile) -> None:
            if cfg.name in data.defined:
                raise ConflictError(f"experiment {cfg.name} already exists")
            if len(self.configured) + len(data.defined) >= MAX_EXPERIMENTS:
                raise ConflictError(f"at most {MAX_EXPERIMENTS} experiments")
            data.defined[cfg.name] = cfg
            data.state[cfg.name] = ExperimentState(updated=time.time())

        self.store.update(fn)
        self._stamp = None
        self._reload()
        self._publish(cfg.name)
        if self.audit is not None:
            self.audit.record(actor, "experiment.create", cfg.name, None, msgspec.to_builtins(cfg))
        return cfg

    def promote(self, name: str, arm: str, actor: str = "admin") -> ExperimentState:
        self.config(name).arm(arm)

        def fn(st: ExperimentState) -> None:
            st.status, st.winner = "promoted", arm
            st.stopped_arms.pop(arm, None)

        return self._change(name, "promote", actor, fn, detail=f"arm {arm} takes all of the experiment's traffic")

    def rollback(self, name: str, actor: str = "admin") -> ExperimentState:
        control = self.config(name).control

        def fn(st: ExperimentState) -> None:
            st.status, st.winner = "rolled_back", None

        return self._change(name, "rollback", actor, fn, detail=f"control {control} takes all of the experiment's traffic")

    def stop(self, name: str, arm: str | None = None, actor: str = "admin") -> ExperimentState:
        """Stop the whole experiment (its requests are no longer assigned), or one arm (back to control)."""
        cfg = self.config(name)
        if arm is not None:
            cfg.arm(arm)
            if arm == cfg.control:
                raise RequestError("the control arm cannot be stopped; stop the experiment or roll it back", param="arm")
            self._stop_arm(name, arm, "stopped by an operator", actor=actor)
            return self.state(name)

        def fn(st: ExperimentState) -> None:
            st.status = "stopped"

        return self._change(name, "stop", actor, fn)

    def resume(self, name: str, actor: str = "admin") -> ExperimentState:
        def fn(st: ExperimentState) -> None:
            st.status, st.winner, st.stopped_arms = "running", None, {}

        return self._change(name, "resume", actor, fn)

    def set_weights(self, name: str, weights: Mapping[str, Any], actor: str = "admin") -> ExperimentState:
        cfg = self.config(name)
        clean: dict[str, float] = {}
        for arm, w in weights.items():
            cfg.arm(arm)
            if not isinstance(w, int | float) or isinstance(w, bool) or not 0 <= w <= 1e6:
                raise RequestError(f"weight of arm {arm} must be a number from 0 to 1000000", param="weights")
            clean[arm] = float(w)
        if sum(clean.get(a.name, a.weight) for a in cfg.arms) <= 0:
            raise RequestError("the weights sum to 0", param="weights")

        def fn(st: ExperimentState) -> None:
            st.weights = {a.name: clean.get(a.name, (st.weights or {}).get(a.name, a.weight)) for a in cfg.arms}

        return self._change(name, "weights", actor, fn)

    # ------------------------------------------------------------------------------------------ views
    def weights(self, name: str) -> dict[str, float]:
        """The share of the experiment's traffic each arm gets now (stopped arms' share counted as control's)."""
        cfg, st = self.config(name), self.state(name)
        live = _prepare(cfg, st)
        if live is None:
            return {a.name: 0.0 for a in cfg.arms}
        out = {a.name: 0.0 for a in cfg.arms}
        prev = 0.0
        for bound, arm in zip(live.bounds, live.lead_to, strict=True):
            out[arm.name] += min(bound, 1.0) - prev
            prev = min(bound, 1.0)
        return out

    def describe(self, name: str) -> dict[str, Any]:
        cfg, st = self.config(name), self.state(name)
        return {"name": name, "source": "config" if cfg in self.configured else "admin",
                "config": msgspec.to_builtins(cfg), "state": msgspec.to_builtins(st), "shares": self.weights(name)}

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(c.name) for c in self.all_configs()]


def _summary(st: ExperimentState) -> dict[str, Any]:
    return {"status": st.status, "weights": st.weights, "stopped_arms": st.stopped_arms, "winner": st.winner}


def build_experiments(settings: Any, catalog: Any, providers: Iterable[str], *, audit: Any = None,
                      metrics: Any = None, engine: Any = None) -> ExperimentSet:
    """The Engine's experiments, with every arm's model and route checked against the catalog and providers."""
    from engine.errors import ConfigError

    known = set(providers)

    def validate(cfg: ExperimentConfig) -> None:
        for arm in cfg.arms:
            if arm.model is not None and arm.model not in catalog:
                raise RequestError(f"experiment {cfg.name}: arm {arm.name}: unknown model {arm.model!r}", param="model")
            if arm.route is not None and arm.route not in known:
                raise RequestError(f"experiment {cfg.name}: arm {arm.name}: route {arm.route!r} is not a configured "
                                   f"provider ({', '.join(sorted(known))})", param="route")
        if cfg.judge is not None and cfg.judge.model not in catalog:
            raise RequestError(f"experiment {cfg.name}: judge: unknown model {cfg.judge.model!r}", param="judge")

    tenants = settings.raw.tenants

    def default_ns(tenant: str) -> str:
        t = tenants.get(tenant)
        return t.namespace if t is not None and t.namespace else "default"

    try:
        return ExperimentSet(getattr(settings.raw, "experiments", ()), settings.data_dir, audit=audit,
                             metrics=metrics, validate=validate, cache_enabled=settings.raw.cache.enabled,
                             default_namespace=default_ns, judge=_judge(engine))
    except (RequestError, ValueError) as exc:
        raise ConfigError(f"{settings.source}: {exc.args[0] if exc.args else exc}") from exc


def _judge(engine: Any) -> Any:
    if engine is None:
        return None
    from engine._experiment_judge import Judge

    return Judge(engine)


def prefer(candidates: list[Any], provider: str) -> list[Any]:
    """The candidates served by ``provider`` first (in their order), then the rest as fallbacks."""
    first = [c for c in candidates if c.route.provider == provider]
    return first + [c for c in candidates if c.route.provider != provider] if first else candidates



__all__ = [
    "MAX_ARMS", "MAX_EXPERIMENTS", "NAME_RE", "Arm", "ArmCache", "Assignment", "ExperimentConfig", "ExperimentNotFound",
    "ExperimentSet", "ExperimentState", "Guard", "GuardEvent", "JudgeConfig", "Target", "bucket", "build_experiments",
    "prefer", "sticky_value",
]
