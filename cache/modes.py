"""Per-request cache modes. The engine enforces them; the rules live here, with the cache.

==============  =====  ======
mode            reads  writes
==============  =====  ======
``on``          yes    yes
``off``         no     no
``read-only``   yes    no      (serve hits, never store: e.g. evaluating a new prompt template)
``write-only``  no     yes     (always call the model, refresh the cache: e.g. warming it)
==============  =====  ======
"""

from __future__ import annotations

from typing import Literal

from cache.errors import CacheInputError

CacheMode = Literal["on", "off", "read-only", "write-only"]

_RULES: dict[str, tuple[bool, bool]] = {
    "on": (True, True),
    "off": (False, False),
    "read-only": (True, False),
    "write-only": (False, True),
}
MODES: tuple[str, ...] = tuple(_RULES)


def _rule(mode: str) -> tuple[bool, bool]:
    try:
        return _RULES[mode]
    except KeyError:
        raise CacheInputError(f"unknown cache mode {mode!r}; expected one of {', '.join(MODES)}") from None


def reads(mode: str) -> bool:
    """Whether a request in ``mode`` may be answered from the cache."""
    return _rule(mode)[0]


def writes(mode: str) -> bool:
    """Whether a response to a request in ``mode`` may be stored."""
    return _rule(mode)[1]
