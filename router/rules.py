"""Routing rules from config: data, not code. They apply before scoring and show in the explanation.

A rule matches on task and/or tenant (an empty field matches anything) and may restrict the models
(``only``), remove some (``deny``), move some to the front (``prefer``), or set the policy and target.
The fields mirror ``engine.config.RoutingRuleConfig`` so the engine converts one into the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from router.types import Policy


class RoutingRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    task: str | None = None
    tenant: str | None = None
    prefer: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    policy: Policy | None = None
    quality_target: float | None = None
    name: str = ""

    def matches(self, task: str, tenant: str | None) -> bool:
        return (self.task is None or self.task == task) and (self.tenant is None or self.tenant == tenant)

    def describe(self, index: int) -> str:
        when = " and ".join(f"{k}={v}" for k, v in (("task", self.task), ("tenant", self.tenant)) if v) or "always"
        acts = []
        if self.only:
            acts.append(f"only {', '.join(self.only)}")
        if self.deny:
            acts.append(f"deny {', '.join(self.deny)}")
        if self.prefer:
            acts.append(f"prefer {', '.join(self.prefer)}")
        if self.policy:
            acts.append(f"policy {self.policy}")
        if self.quality_target is not None:
            acts.append(f"target {self.quality_target}")
        label = self.name or f"rule {index + 1}"
        return f"{label} ({when}): {'; '.join(acts) or 'no action'}"


def load_rules(raw: Iterable[Mapping[str, Any]] | bytes, source: str) -> tuple[RoutingRule, ...]:
    """Rules from parsed config (list of mappings) or JSON bytes; errors name the key and the source."""
    try:
        if isinstance(raw, bytes):
            return msgspec.json.decode(raw, type=tuple[RoutingRule, ...])
        return msgspec.convert(list(raw), type=tuple[RoutingRule, ...])
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(f"{source}: {exc}") from exc
