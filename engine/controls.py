"""Per-request controls: the ``thrifty`` body object and the ``x-thrifty-*`` headers, merged.

The body object wins over headers: it is written by the request's author, headers are often added by
infrastructure in between. ``Cache-Control: no-store`` makes a request read-only (never written), and
``no-cache`` write-only (never served from the cache), as HTTP caches read them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from cache.semantic import MAX_TTL_S
from engine.errors import RequestError
from engine.limits import check_options
from router.types import ThriftyOptions

HEADERS: dict[str, str] = {
    "x-thrifty-cache-mode": "cache_mode",
    "x-thrifty-namespace": "namespace",
    "x-thrifty-ttl": "ttl",
    "x-thrifty-threshold": "threshold",
    "x-thrifty-task": "task",
    "x-thrifty-policy": "policy",
    "x-thrifty-quality-target": "quality_target",
    "x-thrifty-max-cost-usd": "max_cost_usd",
    "x-thrifty-ttft-s": "ttft_s",
    "x-thrifty-stall-s": "stall_s",
    "x-thrifty-deadline-s": "deadline_s",
    "x-thrifty-shadow": "shadow",
}
_FIELD_TO_HEADER = {v: k for k, v in HEADERS.items()}
_NUMERIC = {"ttl", "threshold", "quality_target", "max_cost_usd", "ttft_s", "stall_s", "deadline_s"}
_LIMITS = ("ttft_s", "stall_s", "deadline_s")  # dispatch limits, in seconds
_BOOLEAN = {"shadow"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def options_from_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for header, field in HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        if field in _BOOLEAN:
            flag = value.strip().lower()
            if flag not in _TRUE | _FALSE:
                raise RequestError(f"header {header}: expected true or false, got {value[:40]!r}", param=header)
            out[field] = flag in _TRUE
        elif field in _NUMERIC:
            try:
                out[field] = float(value)
            except ValueError:
                raise RequestError(f"header {header}: expected a number, got {value!r}", param=header) from None
        else:
            out[field] = value.strip()
    cc = headers.get("cache-control", "").lower()
    if "cache_mode" not in out:
        if "no-store" in cc:
            out["cache_mode"] = "read-only"
        elif "no-cache" in cc:
            out["cache_mode"] = "write-only"
    return out


def merge(body: ThriftyOptions | None, from_headers: Mapping[str, Any]) -> ThriftyOptions | None:
    if not from_headers:
        return body
    merged = dict(from_headers)
    if body is not None:
        merged.update(msgspec.to_builtins(body))  # omit_defaults: only the fields the body set
    try:
        return msgspec.convert(merged, ThriftyOptions)
    except msgspec.ValidationError as exc:
        field = str(exc).rsplit("$.", 1)[-1].rstrip("`") if "$." in str(exc) else ""
        where = _FIELD_TO_HEADER.get(field, "thrifty")
        raise RequestError(f"{where}: {exc}", param=where) from exc


def validate(options: ThriftyOptions | None, *, max_chars: int = 512) -> None:
    """Range checks msgspec's types cannot express. Written so that ``nan`` fails every one of them
    (``nan <= 0`` is False, ``0 <= nan <= 1`` is False too): each is a positive statement of the range."""
    if options is None:
        return
    if options.ttl is not None and not 0 < options.ttl <= MAX_TTL_S:
        raise RequestError(f"thrifty.ttl must be a finite number of seconds in (0, {MAX_TTL_S:.0f}], got {options.ttl}",
                           param="ttl")
    if options.threshold is not None and not 0.0 <= options.threshold <= 1.0:
        raise RequestError("thrifty.threshold must be between 0 and 1", param="threshold")
    if options.max_cost_usd is not None and not 0 <= options.max_cost_usd < math.inf:
        raise RequestError("thrifty.max_cost_usd must be a finite, non-negative number of dollars", param="max_cost_usd")
    if options.quality_target is not None and not 0.0 <= options.quality_target <= 1.0:
        raise RequestError("thrifty.quality_target must be between 0 and 1", param="quality_target")
    for name in _LIMITS:
        value = getattr(options, name)
        if value is not None and not 0 < value < math.inf:
            raise RequestError(f"thrifty.{name} (header {_FIELD_TO_HEADER[name]}) must be a finite, positive "
                               f"number of seconds, got {value}", param=name)
    check_options(options, max_chars)
