"""The ledger as analytics data: Parquet, CSV or JSONL files with a documented, versioned schema.

``export(ledger_path, since, until, fmt)`` yields the bytes of one file, a batch of rows at a time, so
the admin route streams it and the CLI writes it without holding the ledger in memory. Rows come in
``(ts, request_id)`` order through keyset pagination on a read-only connection of its own: an export
never holds the ledger's read lock, and WAL readers never block its writers.

The schema (``COLUMNS``) is versioned by ``SCHEMA_VERSION``: a ``schema_version`` column in every row
and, in Parquet, the file metadata key ``thrifty.schema_version``. A column is only ever added (with a
new version), never renamed, retyped or removed. ``stages`` and ``routing`` stay JSON text, not flattened:
their keys vary by request. ``ts`` is a UTC timestamp (microseconds) in Parquet and ISO 8601 text
(``2026-01-31T12:00:00.123456Z``) in CSV and JSONL.
"""

from __future__ import annotations

import csv
import io
import math
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from engine.errors import RequestError

SCHEMA_VERSION = 2  # 2: namespace, entry_id, similarity, hit_score, experiment, arm
FORMATS = ("parquet", "csv", "jsonl")
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv", "jsonl": "application/x-ndjson"}

# (name, Parquet/Arrow type, SQL type for a warehouse table). The README's table is this one.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("schema_version", "int16", "SMALLINT"),
    ("request_id", "string", "VARCHAR"),
    ("client_request_id", "string", "VARCHAR"),
    ("ts", "timestamp_us_utc", "TIMESTAMP_TZ"),
    ("day", "string", "VARCHAR"),
    ("tenant", "string", "VARCHAR"),
    ("virtual_key", "string", "VARCHAR"),
    ("worker", "string", "VARCHAR"),
    ("route", "string", "VARCHAR"),
    ("model", "string", "VARCHAR"),
    ("provider", "string", "VARCHAR"),
    ("task", "string", "VARCHAR"),
    ("stream", "bool", "BOOLEAN"),
    ("prompt_tokens", "int64", "BIGINT"),
    ("completion_tokens", "int64", "BIGINT"),
    ("cached_tokens", "int64", "BIGINT"),
    ("reasoning_tokens", "int64", "BIGINT"),
    ("cost_usd", "float64", "DOUBLE"),
    ("cost_estimated", "bool", "BOOLEAN"),
    ("saved_usd", "float64", "DOUBLE"),
    ("cache", "string", "VARCHAR"),
    ("status", "int32", "INTEGER"),
    ("error_class", "string", "VARCHAR"),
    ("latency_ms", "float64", "DOUBLE"),
    ("overhead_ms", "float64", "DOUBLE"),
    ("attempts", "int32", "INTEGER"),
    ("budget_action", "string", "VARCHAR"),
    ("stages", "string", "VARCHAR"),  # JSON text: {"stage": milliseconds}
    ("routing", "string", "VARCHAR"),  # JSON text: engine.ledger.Routing, on routed requests
    ("prompt", "string", "VARCHAR"),  # only when log_content is on
    ("answer", "string", "VARCHAR"),  # only when log_content is on
    # version 2
    ("namespace", "string", "VARCHAR"),  # the cache space ("tenant/ns"; "/ns" when shared)
    ("entry_id", "int64", "BIGINT"),  # the cache entry served (or, in shadow mode, the would-be hit)
    ("similarity", "float64", "DOUBLE"),  # that entry's cosine similarity to the request
    ("hit_score", "float64", "DOUBLE"),  # the hit policy's score of it (the verifier's probability)
    ("experiment", "string", "VARCHAR"),  # the experiment the request was assigned to
    ("arm", "string", "VARCHAR"),  # and its arm
)
NAMES = tuple(name for name, _, _ in COLUMNS)
_BOOLS = frozenset(n for n, t, _ in COLUMNS if t == "bool")
_BOOL_INDEXES = tuple(i - 1 for i, (_, t, _) in enumerate(COLUMNS) if t == "bool")
_BATCH = 10_000  # rows per query, per Parquet row group
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_json_line = msgspec.json.Encoder()


def parse_time(raw: str, *, param: str, now: float | None = None) -> float:
    """A unix timestamp, an ISO 8601 date or datetime (UTC unless it says otherwise) or a span back
    from now (``90s``, ``15m``, ``24h``, ``7d``, ``2w``); a RequestError naming ``param`` otherwise."""
    text = raw.strip()
    usage = (f"{param} must be a unix timestamp, an ISO 8601 date or datetime (2026-01-31, "
             f"2026-01-31T12:00:00Z) or a span back from now (24h, 7d), got {raw[:40]!r}")
    m = _RELATIVE.match(text)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        ts = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise RequestError(usage, param=param) from None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(ts):
        raise RequestError(usage, param=param)
    return ts


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise RequestError(f"format must be one of {', '.join(FORMATS)}, got {fmt[:40]!r}", param="format")
    if fmt == "parquet":
        _pyarrow()
    return fmt


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise RequestError("parquet export needs pyarrow: pip install 'thrifty[export]' "
                           "(or use --format csv or jsonl)", param="format") from None
    return pyarrow


# ---------------------------------------------------------------------------------------------- rows
def _connect_ro(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise RequestError(f"no ledger at {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _select(conn: sqlite3.Connection) -> str:
    """The SELECT list for this file: a column an older ledger lacks (``routing``, version 2's) reads as null."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(requests)")}
    return ", ".join(n if n in have else f"NULL AS {n}" for n in NAMES if n != "schema_version")


def row_batches(ledger_path: Path, since: float | None, until: float | None,
                batch: int = _BATCH) -> Iterator[list[tuple[Any, ...]]]:
    """Lists of ledger rows (the columns of ``NAMES`` after ``schema_version``) with
    ``since <= ts < until``, in ``(ts, request_id)`` order."""
    conn = _connect_ro(ledger_path)
    try:
        select = _select(conn)
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        last: tuple[float, str] = (lo, "")
        first = True
        while True:
            cmp = ">=" if first else ">"  # the first page includes rows at exactly ``since``
            rows = conn.execute(
                f"SELECT {select} FROM requests WHERE (ts, request_id) {cmp} (?, ?) AND ts < ? "
                "ORDER BY ts, request_id LIMIT ?", (*last, hi, batch)).fetchall()
            first = False
            if not rows:
                return
            yield rows
            ts_i, id_i = NAMES.index("ts") - 1, NAMES.index("request_id") - 1
            last = (rows[-1][ts_i], rows[-1][id_i])
            if len(rows) < batch:
                return
    finally:
        conn.close()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _records(rows: list[tuple[Any, ...]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        rec: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for name, value in zip(NAMES[1:], row, strict=True):
            if name == "ts":
                value = _iso(value)
            elif name in _BOOLS:
                value = bool(value)
            rec[name] = value
        yield rec


# ---------------------------------------------------------------------------------------------- writers
class _Sink(io.RawIOBase):
    """A write-only stream whose bytes are taken away after each batch: the export streams, whole."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.parts.append(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def arrow_schema() -> Any:
    pa = _pyarrow()
    types = {"int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(), "float64": pa.float64(),
             "bool": pa.bool_(), "string": pa.string(), "timestamp_us_utc": pa.timestamp("us", tz="UTC")}
    fields = [pa.field(n, types[t], nullable=n not in ("schema_version", "request_id", "ts"))
              for n, t, _ in COLUMNS]
    return pa.schema(fields, metadata={"thrifty.schema_version": str(SCHEMA_VERSION)})


def _parquet(batches: Iterator[list[tuple[Any, ...]]]) -> Iterator[bytes]:
    pa = _pyarrow()
    import pyarrow.parquet as pq

    schema = arrow_schema()
    sink = _Sink()
    ts_i = NAMES.index("ts") - 1
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        for rows in batches:
            cols = [list(c) for c in zip(*rows, strict=True)]
            cols[ts_i] = [round(t * 1_000_000) for t in cols[ts_i]]
            for i in _BOOL_INDEXES:
                cols[i] = [bool(v) for v in cols[i]]  # SQLite keeps them as 0/1
            arrays = [pa.array([SCHEMA_VERSION] * len(rows), pa.int16())]
            arrays += [pa.array(col, schema.field(i + 1).type) for i, col in enumerate(cols)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            yield sink.take()
    yield sink.take()  # the footer


def _csv(batches: Iterator[list[tuple[Any, ...]]]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(NAMES)
    for rows in batches:
        for rec in _records(rows):
            writer.writerow(["true" if v is True else "false" if v is False else v for v in rec.values()])
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue().encode()


def _jsonl(batches: Iterator[list[tuple[Any, ...]]]) -> Iterator[bytes]:
    for rows in batches:
        yield b"".join(_json_line.encode(rec) + b"\n" for rec in _records(rows))


_WRITERS = {"parquet": _parquet, "csv": _csv, "jsonl": _jsonl}


def export(ledger_path: str | Path, *, since: float | None, until: float | None, fmt: str) -> Iterator[bytes]:
    """The bytes of one export file, in pieces. The format is checked before the first piece."""
    check_format(fmt)
    if since is not None and until is not None and until <= since:
        raise RequestError("until must be later than since", param="until")
    path = Path(ledger_path)
    _connect_ro(path).close()  # a missing ledger is an error now, not in the middle of a response
    return (piece for piece in _WRITERS[fmt](row_batches(path, since, until)) if piece)
