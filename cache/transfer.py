"""JSONL export / import of a cache's entries, vectors included (base64 float32).

The first line is a header naming the encoder and dimension; importing into a cache with another
encoder is refused unless ``reembed`` supplies the cache's own encoder, which re-embeds the texts.
An import is all or nothing: every record is checked before the first is written.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

import msgspec
import numpy as np

from cache.errors import CacheInputError, EncoderMismatchError
from cache.semantic import MAX_TTL_S
from cache.store import Entry

if TYPE_CHECKING:
    from cache.encoder import Encoder
    from cache.semantic import SemanticCache

FORMAT = "thrifty-cache-export"
VERSION = 1
KEY_BYTES = 16  # partition and exact keys are 16-byte blake2b digests (cache.scope)
MAX_NAME_CHARS = 4096
UNIT_TOLERANCE = 1e-3  # as SemanticCache._checked: inside it a vector counts as normalised


class Header(msgspec.Struct, forbid_unknown_fields=True):
    format: str
    version: int
    encoder: str
    dim: int


class Record(msgspec.Struct, forbid_unknown_fields=True):
    entry: Entry
    vector: bytes | None  # float32, base64 in JSON; None for exact-only entries


_enc = msgspec.json.Encoder()
_header_dec = msgspec.json.Decoder(Header)
_record_dec = msgspec.json.Decoder(Record)

PathOrFile = str | os.PathLike[str] | IO[bytes]


@contextlib.contextmanager
def _opened(target: PathOrFile, mode: str) -> Iterator[IO[bytes]]:
    if isinstance(target, str | os.PathLike):
        with open(target, mode) as f:
            yield f
    else:
        yield target


def export_jsonl(cache: SemanticCache, target: PathOrFile) -> int:
    """Write every entry (expired ones too: TTLs travel with them) to ``target``; the count written."""
    store = cache.store
    n = 0
    with _opened(target, "wb") as f:
        f.write(_enc.encode(Header(FORMAT, VERSION, store.encoder_name, store.dim)) + b"\n")
        for entry_id, entry in store.iter_entries():
            _, vec = store.vectors_of([entry_id])
            f.write(_enc.encode(Record(entry, vec.tobytes() if len(vec) else None)) + b"\n")
            n += 1
    return n


def import_jsonl(
    cache: SemanticCache, source: PathOrFile, reembed: Encoder | None = None, batch: int = 1000,
    check_payload: Callable[[bytes], None] | None = None,
) -> int:
    """Insert the entries of an export; the count imported. Vectors are re-embedded with ``reembed``.

    Every record is checked as an insert is (types, finite numbers, a unit vector of the cache's dimension,
    a TTL within :data:`MAX_TTL_S`) before anything is written: a bad line raises ``CacheInputError``
    naming the line and the field, and imports nothing. ``check_payload`` (the engine passes its response
    decoder) raises ``ValueError`` for a stored answer it could not serve."""
    store = cache.store
    with _opened(source, "rb") as f:
        data = f if f.seekable() else io.BytesIO(f.read())  # two passes: check everything, then write
        start = data.tell()
        header = _read_header(data, cache, reembed)
        same = (header.encoder, header.dim) == (store.encoder_name, store.dim)
        check = _Checker(store.dim, check_vectors=same, check_payload=check_payload)
        for lineno, record in _records(data):
            check(record, lineno)
        data.seek(start)
        data.readline()  # the header, checked above
        total, chunk = 0, []
        for _, record in _records(data):
            chunk.append(record)
            if len(chunk) >= batch:
                total += _insert(cache, chunk, None if same else reembed)
                chunk = []
        total += _insert(cache, chunk, None if same else reembed)
    cache.catch_up(force=True)
    return total


def _read_header(f: IO[bytes], cache: SemanticCache, reembed: Encoder | None) -> Header:
    store = cache.store
    try:
        header = _header_dec.decode(f.readline())
    except (msgspec.DecodeError, RecursionError) as e:
        raise CacheInputError(f"not a thrifty cache export (bad header line): {e}") from e
    if header.format != FORMAT or header.version != VERSION:
        raise CacheInputError(f"unsupported export format {header.format!r} v{header.version}")
    if reembed is not None and (reembed.name, reembed.dim) != (store.encoder_name, store.dim):
        raise EncoderMismatchError(
            f"re-embedding encoder {reembed.name!r}/{reembed.dim} is not this cache's "
            f"{store.encoder_name!r}/{store.dim}"
        )
    if (header.encoder, header.dim) != (store.encoder_name, store.dim) and reembed is None:
        raise EncoderMismatchError(
            f"export was written with encoder {header.encoder!r} (dim {header.dim}); this cache uses "
            f"{store.encoder_name!r} (dim {store.dim}); pass reembed=<encoder> to re-embed the texts"
        )
    return header


def _records(f: IO[bytes]) -> Iterator[tuple[int, Record]]:
    for lineno, line in enumerate(iter(f.readline, b""), start=2):
        if not line.strip():
            continue
        try:
            yield lineno, _record_dec.decode(line)
        except (msgspec.DecodeError, RecursionError) as e:
            raise CacheInputError(f"bad export record on line {lineno}: {e}") from e


class _Checker:
    """The checks an insert makes, applied to one exported record (it bypasses ``SemanticCache._entry``)."""

    def __init__(self, dim: int, *, check_vectors: bool, check_payload: Callable[[bytes], None] | None) -> None:
        self.dim = dim
        self.check_vectors = check_vectors
        self.check_payload = check_payload
        self.now = time.time()

    def __call__(self, r: Record, lineno: int) -> None:
        try:
            self._entry(r.entry)
            if r.vector is not None and self.check_vectors:
                self._vector(r.vector)
            if self.check_payload is not None:
                try:
                    self.check_payload(r.entry.response)
                except ValueError as e:
                    raise _Bad("response", f"not a response this cache can serve ({e})") from None
        except _Bad as bad:
            raise CacheInputError(f"bad export record on line {lineno}: {bad.field}: {bad.why}") from None

    def _entry(self, e: Entry) -> None:
        for name in ("partition", "exact_key"):
            if len(getattr(e, name)) != KEY_BYTES:
                raise _Bad(name, f"must be {KEY_BYTES} bytes, got {len(getattr(e, name))}")
        if not e.namespace or len(e.namespace) > MAX_NAME_CHARS:
            raise _Bad("namespace", f"must be 1 to {MAX_NAME_CHARS} characters")
        if len(e.model) > MAX_NAME_CHARS:
            raise _Bad("model", f"longer than {MAX_NAME_CHARS} characters")
        for name in ("created", "last_hit", "cost_usd"):
            value = getattr(e, name)
            if not 0 <= value < math.inf:  # nan fails this too
                raise _Bad(name, f"must be a finite, non-negative number, got {value}")
        if e.created > self.now + 86400:
            raise _Bad("created", "lies in the future")
        if e.expires_at != 0.0 and not 0 < e.expires_at - e.created <= MAX_TTL_S:
            raise _Bad("expires_at", f"must be 0 (never) or within (0, {MAX_TTL_S:.0f}] seconds after created, "
                                     f"got {e.expires_at}")
        for name in ("hits", "tokens_in", "tokens_out", "size"):
            if getattr(e, name) < 0:
                raise _Bad(name, "must not be negative")

    def _vector(self, raw: bytes) -> None:
        if len(raw) != 4 * self.dim:
            raise _Bad("vector", f"has {len(raw)} bytes, expected {self.dim} float32 values ({4 * self.dim} bytes)")
        vec = np.frombuffer(raw, np.float32)
        norm = float(np.linalg.norm(vec))
        if not np.isfinite(vec).all() or abs(norm - 1.0) > UNIT_TOLERANCE:
            # A vector that is not unit-length scores wrongly against every query (served as a hit for
            # unrelated prompts), so it is refused rather than normalised.
            raise _Bad("vector", f"must be a finite unit vector (norm {norm:.4g})")


class _Bad(Exception):
    def __init__(self, field: str, why: str) -> None:
        self.field, self.why = field, why


def _insert(cache: SemanticCache, records: list[Record], reembed: Encoder | None) -> int:
    if not records:
        return 0
    dim = cache.store.dim
    items: list[tuple[Entry, np.ndarray | None]] = []
    fresh = reembed.encode([r.entry.text for r in records]) if reembed is not None else None
    for i, r in enumerate(records):
        if r.vector is None:
            vec = None
        elif fresh is not None:
            vec = fresh[i]
        else:
            vec = np.frombuffer(r.vector, np.float32)
        entry = r.entry
        # The size drives max_bytes eviction: recomputed as an insert computes it, never taken on trust.
        entry.size = len(entry.response) + len(entry.text.encode("utf-8", "surrogatepass")) + 4 * dim + 64
        items.append((entry, vec))
    return len(cache.store.insert_many(items))
