"""Checks on what a client sends, made before anything is decoded deeply, stored or echoed.

* :func:`check_depth` refuses JSON nested deeper than ``server.max_json_depth``. msgspec (like every
  recursive decoder) raises ``RecursionError`` near Python's recursion limit, which would be a 500; the
  check runs on the raw bytes first, and costs two ``bytes.count`` calls unless the body holds more
  brackets than the limit.
* :func:`check_request` refuses non-finite numbers (``1e999`` decodes to ``inf``) and over-long strings
  in the fields that reach the ledger, the cache or a response header.
* :func:`request_id` takes the client's ``x-request-id`` only when it is short and printable.

The transport limits (header count and size, read timeouts) live in :mod:`engine.http_limits`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np

from engine.errors import RequestError

_QUOTE = ord('"')
# Quotes and brackets are the only bytes the depth depends on (after escapes are gone).
_INTEREST = np.zeros(256, dtype=bool)
_INTEREST[[ord(c) for c in '"[]{}']] = True
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """The deepest nesting of objects and arrays in a JSON text, brackets inside strings ignored.

    Escapes go first, with C-speed ``bytes.replace``: pairs of backslashes, then escaped quotes (scanning
    left to right pairs them exactly as a JSON lexer does). What is left is a sequence of quotes and
    brackets, kept in order by one numpy gather; a bracket after an odd number of quotes is inside a
    string. Where the text is not JSON this may count more than a parser would reach, never fewer before
    the point where the parser stops. About 0.5 ms for 60 KB and 50 ms for 4 MB of brackets."""
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    b = np.frombuffer(text, dtype=np.uint8)
    marks = b[_INTEREST[b]]
    if marks.size == 0:
        return 0
    inside = (np.cumsum(marks == _QUOTE, dtype=np.int32) & 1).astype(bool)
    step = _STEP[marks]
    step[inside] = 0
    return int(np.cumsum(step, dtype=np.int32).max(initial=0))


def check_depth(body: bytes, max_depth: int, what: str = "request body") -> None:
    # The bracket count bounds the depth from above: almost every request is decided right here.
    if body.count(b"{") + body.count(b"[") <= max_depth:
        return
    depth = json_depth(body)
    if depth > max_depth:
        raise RequestError(f"{what}: JSON nested {depth} levels deep; the limit is {max_depth}")


def finite(value: float | None, name: str) -> None:
    if value is not None and not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number, got {value}", param=name)


def short(value: str | None, name: str, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise RequestError(f"{name} is {len(value)} characters long; the limit is {limit}", param=name)


_FLOAT_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_STRING_FIELDS = ("model", "user")


def check_request(req: Any, max_chars: int) -> None:
    """Numbers finite, and the strings that reach storage or headers short, before anything is stored."""
    for name in _FLOAT_FIELDS:
        finite(getattr(req, name, None), name)
    for name in _STRING_FIELDS:
        short(getattr(req, name, None), name, max_chars)
    bias = getattr(req, "logit_bias", None)
    if bias:
        _all_finite(bias.values(), "logit_bias")
    metadata = getattr(req, "metadata", None)
    if metadata:
        for key, value in metadata.items():
            short(key, "metadata key", max_chars)
            short(value, f"metadata[{key!r}]", max_chars)


def check_options(options: Any, max_chars: int) -> None:
    """The ``thrifty`` controls' strings (namespace, task): bounded like every stored field."""
    if options is None:
        return
    short(options.namespace, "namespace", max_chars)
    short(options.task, "task", max_chars)


def _all_finite(values: Iterable[float], name: str) -> None:
    for v in values:
        finite(v, name)


def request_id(header: str | None, max_chars: int) -> str:
    """The client's ``x-request-id`` when it is short and printable ASCII, else a fresh one. Too long or
    odd bytes is refused by :func:`check_request_id`; this only picks the id errors are reported under."""
    if header and len(header) <= max_chars and header.isascii() and header.isprintable():
        return header
    return uuid.uuid4().hex


def check_request_id(header: str | None, max_chars: int) -> None:
    if header is None:
        return
    short(header, "x-request-id", max_chars)
    if not (header.isascii() and header.isprintable()):
        raise RequestError("x-request-id must be printable ASCII", param="x-request-id")
