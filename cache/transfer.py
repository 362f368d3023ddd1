"""JSONL export / import of a cache's entries, vectors included (base64 float32).

The first line is a header naming the encoder and dimension; importing into a cache with another
encoder is refused unless ``reembed`` supplies the cache's own encoder, which re-embeds the texts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING

import msgspec
import numpy as np

from cache.errors import CacheInputError, EncoderMismatchError
from cache.store import Entry

if TYPE_CHECKING:
    from cache.encoder import Encoder
    from cache.semantic import SemanticCache

FORMAT = "thrifty-cache-export"
VERSION = 1


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
    cache: SemanticCache, source: PathOrFile, reembed: Encoder | None = None, batch: int = 1000
) -> int:
    """Insert the entries of an export; the count imported. Vectors are re-embedded with ``reembed``."""
    store = cache.store
    with _opened(source, "rb") as f:
        lines = iter(f)
        try:
            header = _header_dec.decode(next(lines))
        except (StopIteration, msgspec.DecodeError) as e:
            raise CacheInputError(f"not a thrifty cache export (bad header line): {e}") from e
        if header.format != FORMAT or header.version != VERSION:
            raise CacheInputError(f"unsupported export format {header.format!r} v{header.version}")
        same = (header.encoder, header.dim) == (store.encoder_name, store.dim)
        if reembed is not None and (reembed.name, reembed.dim) != (store.encoder_name, store.dim):
            raise EncoderMismatchError(
                f"re-embedding encoder {reembed.name!r}/{reembed.dim} is not this cache's "
                f"{store.encoder_name!r}/{store.dim}"
            )
        if not same and reembed is None:
            raise EncoderMismatchError(
                f"export was written with encoder {header.encoder!r} (dim {header.dim}); this cache uses "
                f"{store.encoder_name!r} (dim {store.dim}); pass reembed=<encoder> to re-embed the texts"
            )
        total, chunk = 0, []
        for lineno, line in enumerate(lines, start=2):
            if not line.strip():
                continue
            try:
                chunk.append(_record_dec.decode(line))
            except msgspec.DecodeError as e:
                raise CacheInputError(f"bad export record on line {lineno}: {e}") from e
            if len(chunk) >= batch:
                total += _insert(cache, chunk, None if same else reembed)
                chunk = []
        total += _insert(cache, chunk, None if same else reembed)
    cache.catch_up(force=True)
    return total


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
            if vec.shape[0] != dim:
                raise CacheInputError(f"export record vector has dimension {vec.shape[0]}, expected {dim}")
        items.append((r.entry, vec))
    return len(cache.store.insert_many(items))
