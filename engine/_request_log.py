"""``GET /admin/requests``: ledger rows, newest first, filtered, with an opaque cursor.

The cursor is the ``(ts, request_id)`` of the last row of a page (base64url JSON): the next page is the
rows strictly before it in ``(ts DESC, request_id DESC)`` order. Rows added while a client pages land
before its cursor (they are newer) or, for a row committed late with an older ``ts``, after it, where a
later page shows it: no row is skipped or shown twice.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import msgspec

from engine.errors import RequestError
from engine.export import parse_time

MAX_LIMIT = 1000
_FILTERS = {"tenant": "tenant", "key": "virtual_key", "model": "model", "provider": "provider",
            "cache": "cache", "status": "status"}
_PARAMS = frozenset({*_FILTERS, "since", "until", "cursor", "limit"})
_OUTCOMES = ("exact", "hit", "miss", "bypass", "error")
_cursor_decoder = msgspec.json.Decoder(tuple[float, str])
_COLUMNS = ("request_id, client_request_id, ts, tenant, virtual_key, worker, route, model, provider, task, "
            "stream, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_usd, "
            "cost_estimated, saved_usd, cache, status, error_class, latency_ms, overhead_ms, stages, "
            "attempts, budget_action, prompt, answer, routing")
_json_decode = msgspec.json.decode


def encode_cursor(ts: float, request_id: str) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode((ts, request_id))).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[float, str]:
    try:
        ts, rid = _cursor_decoder.decode(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise RequestError("cursor is not one this API handed out (use next_cursor as given)", param="cursor") from None
    if not math.isfinite(ts):
        raise RequestError("cursor is not one this API handed out (use next_cursor as given)", param="cursor")
    return ts, rid


def _int(raw: str, param: str, lo: int, hi: int) -> int:
    if not (raw.isascii() and raw.isdigit()) or not lo <= int(raw) <= hi:
        raise RequestError(f"{param} must be an integer from {lo} to {hi}, got {raw[:40]!r}", param=param)
    return int(raw)


def build_query(params: Any) -> tuple[str, tuple[Any, ...], int]:
    """SQL (WHERE ... ORDER ... LIMIT) and its parameters from the query string; a 400 naming the
    parameter that is wrong."""
    for name in params:
        if name not in _PARAMS:
            raise RequestError(f"unknown parameter {name[:40]!r}; known: {', '.join(sorted(_PARAMS))}", param=name)
    clauses: list[str] = []
    args: list[Any] = []
    for name, column in _FILTERS.items():
        raw = params.get(name)
        if raw is None:
            continue
        if name == "cache" and raw not in _OUTCOMES:
            raise RequestError(f"cache must be one of {', '.join(_OUTCOMES)}, got {raw[:40]!r}", param="cache")
        clauses.append(f"{column} = ?")
        args.append(_int(raw, "status", 100, 599) if name == "status" else raw)
    for name, op in (("since", ">="), ("until", "<")):
        if params.get(name):
            clauses.append(f"ts {op} ?")
            args.append(parse_time(params[name], param=name))
    if params.get("cursor"):
        clauses.append("(ts, request_id) < (?, ?)")
        args.extend(_decode_cursor(params["cursor"]))
    limit = _int(params["limit"], "limit", 1, MAX_LIMIT) if "limit" in params else 100
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    sql = f"SELECT {_COLUMNS} FROM requests{where} ORDER BY ts DESC, request_id DESC LIMIT ?"
    return sql, (*args, limit), limit


def page(ledger: Any, params: Any) -> dict[str, Any]:
    """One page: ``{"data": [rows], "next_cursor": str | None}``."""
    sql, args, limit = build_query(params)
    rows = ledger.query(sql, args)
    content = ledger.log_content
    for row in rows:
        row["stream"] = bool(row["stream"])
        row["cost_estimated"] = bool(row["cost_estimated"])
        row["stages"] = _json_decode(row["stages"]) if row["stages"] else {}
        row["routing"] = _json_decode(row["routing"]) if row["routing"] else None
        if not content:
            del row["prompt"], row["answer"]  # content logging is off: no always-empty fields
    last = rows[-1] if len(rows) == limit else None
    return {"data": rows, "next_cursor": encode_cursor(last["ts"], last["request_id"]) if last else None}
