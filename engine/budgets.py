"""Budgets per tenant and per virtual key: daily and monthly USD, soft (warn) and hard (reject/downgrade).

Spend is tracked in memory for this process and summed with what other workers wrote to the shared
ledger (refreshed at most every ``refresh_s`` seconds), so the check on the request path is a few dict
lookups, and several workers sharing one data directory still see each other's spend.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

import msgspec

log = logging.getLogger("thrifty.budgets")

Action = Literal["ok", "warn", "downgrade", "reject"]


class Limit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    soft: float | None = None  # USD: crossing it warns (log, metric, admin API)
    hard: float | None = None  # USD: reaching it rejects or downgrades


class BudgetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    daily_usd: Limit | None = None
    monthly_usd: Limit | None = None
    on_hard: Literal["reject", "downgrade"] = "reject"


class BudgetState(msgspec.Struct):
    subject: str  # "tenant:acme" or "key:team-a"
    period: str  # "daily" | "monthly"
    window: str  # the day or month it covers
    spend_usd: float
    soft_usd: float | None
    hard_usd: float | None
    status: Action


class Verdict(msgspec.Struct, frozen=True):
    action: Action
    message: str = ""


def _windows(now: float) -> dict[str, str]:
    t = time.gmtime(now)
    return {"daily": time.strftime("%Y-%m-%d", t), "monthly": time.strftime("%Y-%m", t)}


# Reads another workers' spend: (kind, name, period, window, my_worker) -> USD.
SpendReader = Callable[[str, str, str, str, str], float]


class BudgetTracker:
    def __init__(self, budgets: dict[str, BudgetConfig], *, worker: str,
                 read_spend: SpendReader | None = None, refresh_s: float = 1.0,
                 on_warn: Callable[[str, str, float, float], None] | None = None) -> None:
        self._budgets = budgets  # subject ("tenant:x" / "key:y") -> config
        self._worker = worker
        self._read_spend = read_spend
        self._refresh_s = refresh_s
        self._on_warn = on_warn
        self._own: dict[tuple[str, str, str], float] = {}
        self._others: dict[tuple[str, str, str], tuple[float, float]] = {}  # -> (spend, read_at)
        self._warned: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def subjects(self, tenant: str, key_name: str | None) -> list[str]:
        out = [f"tenant:{tenant}"]
        if key_name:
            out.append(f"key:{key_name}")
        return [s for s in out if s in self._budgets]

    def add(self, tenant: str, key_name: str | None, cost_usd: float, now: float | None = None) -> None:
        if cost_usd <= 0:
            return
        wins = _windows(now or time.time())
        with self._lock:
            for subject in self.subjects(tenant, key_name):
                for period, window in wins.items():
                    k = (subject, period, window)
                    self._own[k] = self._own.get(k, 0.0) + cost_usd

    def spend(self, subject: str, period: str, window: str) -> float:
        k = (subject, period, window)
        return self._own.get(k, 0.0) + self._others_spend(k)

    def _others_spend(self, k: tuple[str, str, str]) -> float:
        if self._read_spend is None:
            return 0.0
        now = time.monotonic()
        cached = self._others.get(k)
        if cached is not None and now - cached[1] < self._refresh_s:
            return cached[0]
        subject, period, window = k
        kind, name = subject.split(":", 1)
        value = self._read_spend(kind, name, period, window, self._worker)
        self._others[k] = (value, now)
        return value

    def check(self, tenant: str, key_name: str | None, now: float | None = None) -> Verdict:
        """The strongest action any of the request's budgets calls for."""
        wins = _windows(now or time.time())
        worst: Verdict = Verdict("ok")
        rank = {"ok": 0, "warn": 1, "downgrade": 2, "reject": 3}
        for subject in self.subjects(tenant, key_name):
            cfg = self._budgets[subject]
            for period, limit in (("daily", cfg.daily_usd), ("monthly", cfg.monthly_usd)):
                if limit is None:
                    continue
                spent = self.spend(subject, period, wins[period])
                verdict = self._judge(subject, period, wins[period], spent, limit, cfg)
                if rank[verdict.action] > rank[worst.action]:
                    worst = verdict
        return worst

    def _judge(self, subject: str, period: str, window: str, spent: float, limit: Limit,
               cfg: BudgetConfig) -> Verdict:
        if limit.hard is not None and spent >= limit.hard:
            msg = (f"{subject} has spent ${spent:.4f} of its {period} hard limit ${limit.hard:.2f} "
                   f"({window})")
            return Verdict("reject" if cfg.on_hard == "reject" else "downgrade", msg)
        if limit.soft is not None and spent >= limit.soft:
            msg = f"{subject} passed its {period} soft limit: ${spent:.4f} of ${limit.soft:.2f} ({window})"
            k = (subject, period, window)
            if k not in self._warned:
                self._warned.add(k)
                log.warning("budget warning: %s", msg)
                if self._on_warn is not None:
                    self._on_warn(subject, period, spent, limit.soft)
            return Verdict("warn", msg)
        return Verdict("ok")

    def states(self, now: float | None = None) -> list[BudgetState]:
        wins = _windows(now or time.time())
        out = []
        for subject, cfg in self._budgets.items():
            for period, limit in (("daily", cfg.daily_usd), ("monthly", cfg.monthly_usd)):
                if limit is None:
                    continue
                spent = self.spend(subject, period, wins[period])
                action = self._judge(subject, period, wins[period], spent, limit, cfg).action
                out.append(BudgetState(subject, period, wins[period], round(spent, 6), limit.soft,
                                       limit.hard, action))
        return out
