"""Experiments' configuration: the Structs of ``experiments:`` in the config file and of
``POST /admin/experiments`` (decoded with msgspec; unknown keys are errors naming the key). Re-exported by
:mod:`engine.experiments`, which documents them."""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from engine.errors import RequestError
from router.types import CacheMode, Policy

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_ARMS = 8


def _name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return "must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
    return None


class ArmCache(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Cache settings of an arm (these share the cache partition with control)."""

    mode: CacheMode | None = None
    threshold: float | None = None
    ttl_s: float | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.ttl_s is not None and not 0 < self.ttl_s <= 10 * 365 * 86400:
            raise ValueError(f"ttl_s must be a positive number of seconds, got {self.ttl_s}")


class Arm(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    weight: float
    model: str | None = None  # pin this catalog model (or alias)
    route: str | None = None  # a provider name: candidates it serves are tried first
    policy: Policy | None = None  # the routing policy for "auto" requests
    cache: ArmCache | None = None

    def __post_init__(self) -> None:
        problem = _name_problem(self.name)
        if problem:
            raise ValueError(f"arm name {self.name!r} {problem}")
        if not 0 <= self.weight <= 1e6 or self.weight != self.weight:
            raise ValueError(f"arm {self.name}: weight must be a number from 0 to 1000000, got {self.weight}")

    @property
    def answers_differ(self) -> bool:
        """Whether this arm changes what answers (and so needs a cache partition of its own)."""
        return self.model is not None or self.route is not None or self.policy is not None


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    tenants: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # virtual key names
    namespaces: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()  # the request's task hint


class Guard(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    max_error_rate: float | None = None  # share of 5xx answers in the window
    max_p99_ms: float | None = None  # 99th percentile of total latency in the window
    window_s: float = 60.0
    min_requests: int = 20  # the window must hold this many of the arm's requests before it is judged

    def __post_init__(self) -> None:
        if self.max_error_rate is not None and not 0 <= self.max_error_rate < 1:
            raise ValueError(f"max_error_rate must be in [0, 1), got {self.max_error_rate}")
        if self.max_p99_ms is not None and not self.max_p99_ms > 0:
            raise ValueError(f"max_p99_ms must be positive, got {self.max_p99_ms}")
        if not 0.1 <= self.window_s <= 86400:
            raise ValueError(f"window_s must be between 0.1 and 86400 seconds, got {self.window_s}")
        if not 1 <= self.min_requests <= 1_000_000:
            raise ValueError(f"min_requests must be between 1 and 1000000, got {self.min_requests}")


class JudgeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A judge model comparing a sample of each arm's answers with control's (engine/_experiment_judge.py)."""

    model: str  # a catalog model
    sample: float = 0.02  # share of a non-control arm's answered requests that are judged
    max_pending: int = 4  # comparisons in flight at once per worker; more are not sampled

    def __post_init__(self) -> None:
        if not 0 < self.sample <= 1:
            raise ValueError(f"judge.sample must be in (0, 1], got {self.sample}")
        if not 1 <= self.max_pending <= 256:
            raise ValueError(f"judge.max_pending must be between 1 and 256, got {self.max_pending}")


class ExperimentConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    arms: tuple[Arm, ...]
    control: str
    target: Target = Target()
    stickiness: Literal["user", "tenant", "conversation"] = "user"
    guard: Guard = Guard()
    alpha: float = 0.05  # the sequential test's error rate (false "decided" under no difference)
    judge: JudgeConfig | None = None

    def __post_init__(self) -> None:
        problem = _name_problem(self.name)
        if problem:
            raise ValueError(f"experiment name {self.name!r} {problem}")
        names = [a.name for a in self.arms]
        if not 2 <= len(names) <= MAX_ARMS:
            raise ValueError(f"experiment {self.name}: arms: between 2 and {MAX_ARMS} arms, got {len(names)}")
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name}: arms: duplicate arm names in {names}")
        if self.control not in names:
            raise ValueError(f"experiment {self.name}: control {self.control!r} is not one of the arms {names}")
        if sum(a.weight for a in self.arms) <= 0:
            raise ValueError(f"experiment {self.name}: arms: the weights sum to 0")
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"experiment {self.name}: alpha must be in (0, 0.5), got {self.alpha}")

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise RequestError(f"experiment {self.name} has no arm {name!r}; arms: "
                           f"{', '.join(a.name for a in self.arms)}", param="arm")
