"""Fault injection for the budget benchmarks: proves they can fail.

With ``THRIFTY_BENCH_INJECT_SLEEP_MS=60`` set, :func:`apply` wraps the pipeline's first step (the cache
lookup, which every path runs: exact hit, semantic hit and miss) with an ``asyncio.sleep`` of that many
milliseconds. In-process benchmarks call :func:`apply`; the proxy benchmarks start ``thrifty serve``
through this module (``python -m bench._inject --config … serve …``), which applies it and then runs
thrifty's own CLI in the same process (uvicorn with one worker serves in-process).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

ENV = "THRIFTY_BENCH_INJECT_SLEEP_MS"


def injected_ms() -> float:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{ENV} must be a number of milliseconds, got {raw!r}") from None
    return max(0.0, value)


def apply() -> Callable[[], None]:
    """Wrap ``Pipeline.lookup`` with the configured sleep (a no-op when unset); returns an undo."""
    ms = injected_ms()
    if ms <= 0:
        return lambda: None
    from engine.pipeline import Pipeline

    original = Pipeline.lookup

    @functools.wraps(original)
    async def slow_lookup(self: Any, ctx: Any) -> Any:
        await asyncio.sleep(ms / 1000)
        return await original(self, ctx)

    Pipeline.lookup = slow_lookup  # type: ignore[method-assign]

    def undo() -> None:
        Pipeline.lookup = original  # type: ignore[method-assign]

    return undo


def main(argv: list[str] | None = None) -> int:
    apply()
    from engine.cli import main as thrifty_main

    return int(thrifty_main(argv if argv is not None else sys.argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
