"""LMDB persistence: entries, vectors, exact keys, membership, a change log, TTL index, snapshots.

One insert or delete is one LMDB write transaction, so a writer killed mid-insert leaves either the
whole entry or nothing. Every change also appends to the ``log`` sub-database under a global sequence
number; other processes sharing the directory replay the log to keep their in-memory index current.

Sub-databases (keys are big-endian so LMDB's byte order is numeric order)::

    meta     magic, schema, encoder, dim, created, seq
    entries  id(8)                 -> Entry (msgpack)
    vectors  id(8)                 -> float32 bytes
    exact    exact_key(16)         -> id(8)
    members  partition(16) id(8)   -> ""
    spaces   blake2b(namespace) id -> ""
    expiry   expires_ms(8) id(8)   -> ""
    log      seq(8)                -> LogOp (msgpack)
    evict    policy key, id(8)     -> size(8)   derived: entries in eviction order (see below)

``evict`` is ordered by the eviction policy's key, so picking victims is a cursor walk from the start,
not a scan and sort of every entry. It is derived data: built at open when missing or when the
directory was last used with another policy (one O(n) pass, logged), and kept current by every
insert, delete and hit-count flush. Processes sharing a directory must use the same policy.

Index snapshots live next to ``data.mdb`` as ``index.snapshot``, written to a temporary file and renamed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import numpy as np

from cache.errors import (
    CacheDirError,
    CacheError,
    CacheFullError,
    CorruptCacheError,
    EncoderMismatchError,
    SchemaVersionError,
)

SCHEMA_VERSION = 1
MAGIC = b"thrifty-cache"
_U64 = struct.Struct(">Q")
_DBS = (b"meta", b"entries", b"vectors", b"exact", b"members", b"spaces", b"expiry", b"log")
_DERIVED = (b"evict",)  # rebuilt from ``entries`` when missing: caches written before it still open
_MAX_U64 = (1 << 64) - 1
log = logging.getLogger(__name__)


class Entry(msgspec.Struct, array_like=True):
    partition: bytes
    exact_key: bytes
    namespace: str
    text: str
    response: bytes
    created: float
    expires_at: float  # 0.0 = never
    hits: int
    last_hit: float
    model: str
    cost_usd: float
    tokens_in: int
    tokens_out: int
    size: int  # bytes this entry occupies (payload + text + vector), for max_bytes eviction

    def expired(self, now: float) -> bool:
        return 0.0 < self.expires_at <= now


class LogOp(msgspec.Struct, array_like=True):
    seq: int
    op: str  # "add" | "del"
    id: int
    partition: bytes


class Snapshot(msgspec.Struct, array_like=True):
    cache_id: bytes  # meta "id" of the cache it belongs to: a stale file from another cache is ignored
    seq: int
    encoder: str
    dim: int
    partitions: list[tuple[bytes, bytes, bytes, bytes | None]]  # partition, ids, vectors, hnsw


_entry_enc, _entry_dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder(Entry)
_log_dec = msgspec.msgpack.Decoder(LogOp)
_snap_dec = msgspec.msgpack.Decoder(Snapshot)


def u64(n: int) -> bytes:
    return _U64.pack(n)


def _u64_at(txn: lmdb.Transaction, key: bytes, db: Any) -> int:
    raw = txn.get(key, db=db)
    return int(_U64.unpack(bytes(raw))[0]) if raw is not None else 0


def ns_key(namespace: str) -> bytes:
    return hashlib.blake2b(namespace.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _us(t: float) -> bytes:
    return u64(min(max(int(t * 1e6), 0), _MAX_U64))


# Eviction policies are data: a name and the key that orders entries from "evict first" to "evict last".
# Keys are bytes whose byte order is the policy's order (big-endian), because LMDB sorts the ``evict``
# table by them; ties fall back to entry id (insert order).
EVICTION_POLICIES: dict[str, Callable[[Entry], bytes]] = {
    "lru": lambda e: _us(max(e.last_hit, e.created)),
    "lfu": lambda e: u64(e.hits) + _us(max(e.last_hit, e.created)),
    "fifo": lambda e: _us(e.created),
    "largest-first": lambda e: u64(_MAX_U64 - max(e.size, 0)),
}


class Store:
    """An open cache directory. Thread-safe (LMDB transactions); share one per process."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        encoder_name: str,
        dim: int,
        map_size: int = 64 << 20,
        max_map_size: int = 16 << 30,
        durable: bool = True,
        eviction: str = "lru",
    ):
        self.path = Path(path)
        self.encoder_name, self.dim = encoder_name, dim
        self.eviction = eviction
        self._evict_key = EVICTION_POLICIES[eviction]
        self.max_map_size = max(max_map_size, map_size)
        self.env = _open_env(self.path, map_size, durable)
        self._gate = threading.Condition()  # open transactions vs. map resizes (see _Txn)
        self._open_txns = 0
        self._resizing = False
        try:
            self._check_or_init()
        except BaseException:
            self.env.close()
            raise

    # ------------------------------------------------------------------------------------ opening
    def _check_or_init(self) -> None:
        try:
            empty = self.env.stat()["entries"] == 0  # the main DB lists the named sub-databases
        except lmdb.Error as e:
            raise CorruptCacheError(f"{self.path} is not a readable LMDB cache: {e}") from e
        if empty:
            self._init_meta()
        try:
            self.db = {name.decode(): self.env.open_db(name, create=False) for name in _DBS}
        except lmdb.Error as e:
            raise CorruptCacheError(f"{self.path} holds an LMDB database that thrifty did not write ({e})") from e
        meta = self._meta()
        self.cache_id = meta.get("id", b"")
        if meta.get("magic") != MAGIC:
            raise CorruptCacheError(f"{self.path} holds an LMDB database that thrifty did not write")
        schema = int(meta.get("schema", b"0"))
        if schema != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path} was written with cache schema version {schema}; this thrifty reads version "
                f"{SCHEMA_VERSION}. Use another cache directory or export/import the entries."
            )
        enc, dim = meta.get("encoder", b"").decode(), int(meta.get("dim", b"0"))
        if (enc, dim) != (self.encoder_name, self.dim):
            raise EncoderMismatchError(
                f"{self.path} was written with encoder {enc!r} (dim {dim}); this cache is opened with "
                f"{self.encoder_name!r} (dim {self.dim}). Vectors of different encoders cannot be mixed: "
                "use another cache directory, or export and re-import with re-embedding."
            )
        self._ensure_evict_index(meta.get("eviction", b"").decode())

    def _ensure_evict_index(self, recorded: str) -> None:
        """Open (creating if missing) the derived ``evict`` table; refill it if built for another policy."""

        def txn_fn(txn: lmdb.Transaction) -> None:
            db = self.env.open_db(b"evict", txn=txn)
            self.db["evict"] = db
            if recorded == self.eviction:
                return
            log.info("cache %s: building the %r eviction order (was %r)", self.path, self.eviction, recorded)
            txn.drop(db, delete=False)
            for k, v in txn.cursor(db=self.db["entries"]):
                e = _entry_dec.decode(v)
                txn.put(self._evict_key(e) + bytes(k), u64(e.size), db=db)
            txn.put(b"eviction", self.eviction.encode(), db=self.db["meta"])

        self.write(txn_fn)

    def _init_meta(self) -> None:
        with self.env.begin(write=True) as txn:
            for name in _DBS:
                self.env.open_db(name, txn=txn)
            meta = self.env.open_db(b"meta", txn=txn)
            if txn.get(b"magic", db=meta) is None:  # another process may have won the race
                for k, v in {
                    b"magic": MAGIC,
                    b"schema": str(SCHEMA_VERSION).encode(),
                    b"encoder": self.encoder_name.encode(),
                    b"dim": str(self.dim).encode(),
                    b"created": repr(time.time()).encode(),
                    b"id": os.urandom(16),
                    b"seq": u64(0),
                    b"eviction": self.eviction.encode(),
                }.items():
                    txn.put(k, v, db=meta)

    def _meta(self) -> dict[str, bytes]:
        with self.read() as txn:
            return {bytes(k).decode(): bytes(v) for k, v in txn.cursor(db=self.db["meta"])}

    def close(self) -> None:
        self.env.close()

    # ------------------------------------------------------------------------------------ transactions
    def read(self) -> _Txn:
        """A read transaction as a context manager: ``with store.read() as txn: ...``."""
        return _Txn(self, write=False)

    def write(self, fn: Callable[[lmdb.Transaction], Any], on_full: Callable[[], bool] | None = None) -> Any:
        """Run ``fn`` in one write transaction; on a full map grow it (doubling), then ``on_full``."""
        evictions = 0
        while True:
            try:
                with _Txn(self, write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError as e:
                if self._grow():
                    continue
                if on_full is not None and evictions < 8 and on_full():
                    evictions += 1  # bounded: a hopeless write must not empty the cache
                    continue
                raise CacheFullError(
                    f"cache {self.path} is full at max_map_size={self.max_map_size} bytes and nothing could be "
                    "evicted; raise max_map_size or lower max_entries/max_bytes"
                ) from e
            except lmdb.Error as e:
                raise CacheError(f"LMDB write failed in {self.path}: {e}") from e

    def _grow(self) -> bool:
        size = self.env.info()["map_size"]
        if size >= self.max_map_size:
            return False
        self._resize(min(size * 2, self.max_map_size))
        return True

    def _resize(self, size: int) -> None:
        """``set_mapsize`` (0 = adopt another process's size); LMDB requires no open txn in this process."""
        with self._gate:
            self._resizing = True
            while self._open_txns:
                self._gate.wait()
            try:
                self.env.set_mapsize(size)
            finally:
                self._resizing = False
                self._gate.notify_all()

    # ------------------------------------------------------------------------------------ writes
    def insert(self, entry: Entry, vector: np.ndarray | None, on_full: Callable[[], bool] | None = None) -> int:
        """Store one entry (``vector`` None = exact-only, never indexed) in one transaction; its id."""
        return int(self.write(lambda txn: self._insert_in(txn, entry, vector), on_full))

    def insert_many(self, items: list[tuple[Entry, np.ndarray | None]], on_full: Callable[[], bool] | None = None) -> list[int]:
        """Bulk insert in one transaction (imports, benchmarks): all or nothing."""
        return list(self.write(lambda txn: [self._insert_in(txn, e, v) for e, v in items], on_full))

    def _insert_in(self, txn: lmdb.Transaction, entry: Entry, vector: np.ndarray | None) -> int:
        old = txn.get(entry.exact_key, db=self.db["exact"])
        if old is not None:  # same exact request: the newer answer replaces the old one
            self._delete_in(txn, int.from_bytes(old, "big"))
        seq = self._next_seq(txn)
        key = u64(seq)
        txn.put(key, _entry_enc.encode(entry), db=self.db["entries"])
        if vector is not None:
            txn.put(key, np.ascontiguousarray(vector, np.float32).tobytes(), db=self.db["vectors"])
            txn.put(entry.partition + key, b"", db=self.db["members"])
        txn.put(entry.exact_key, key, db=self.db["exact"])
        txn.put(ns_key(entry.namespace) + key, b"", db=self.db["spaces"])
        if entry.expires_at > 0:
            txn.put(u64(int(entry.expires_at * 1000)) + key, b"", db=self.db["expiry"])
        txn.put(self._evict_key(entry) + key, u64(entry.size), db=self.db["evict"])
        self._add_bytes(txn, entry.size)
        txn.put(key, msgspec.msgpack.encode(LogOp(seq, "add", seq, entry.partition)), db=self.db["log"])
        return seq

    def _add_bytes(self, txn: lmdb.Transaction, delta: int) -> None:
        raw = txn.get(b"bytes", db=self.db["meta"])
        total = (_U64.unpack(raw)[0] if raw else 0) + delta
        txn.put(b"bytes", u64(max(total, 0)), db=self.db["meta"])

    def delete(self, ids: list[int]) -> int:
        if not ids:
            return 0
        return int(self.write(lambda txn: sum(self._delete_in(txn, i) for i in ids)))

    def _next_seq(self, txn: lmdb.Transaction) -> int:
        seq = _u64_at(txn, b"seq", self.db["meta"]) + 1
        txn.put(b"seq", u64(seq), db=self.db["meta"])
        return seq

    def _delete_in(self, txn: lmdb.Transaction, entry_id: int) -> int:
        key = u64(entry_id)
        raw = txn.get(key, db=self.db["entries"])
        if raw is None:
            return 0
        e = _entry_dec.decode(raw)
        txn.delete(key, db=self.db["entries"])
        txn.delete(key, db=self.db["vectors"])
        if txn.get(e.exact_key, db=self.db["exact"]) == key:
            txn.delete(e.exact_key, db=self.db["exact"])
        txn.delete(e.partition + key, db=self.db["members"])
        self._add_bytes(txn, -e.size)
        txn.delete(ns_key(e.namespace) + key, db=self.db["spaces"])
        if e.expires_at > 0:
            txn.delete(u64(int(e.expires_at * 1000)) + key, db=self.db["expiry"])
        txn.delete(self._evict_key(e) + key, db=self.db["evict"])
        seq = self._next_seq(txn)
        txn.put(u64(seq), msgspec.msgpack.encode(LogOp(seq, "del", entry_id, e.partition)), db=self.db["log"])
        return 1

    def update_hits(self, hits: dict[int, tuple[int, float]]) -> None:
        """Add buffered hit counts (id -> (count, last hit time)) in one transaction."""

        def txn_fn(txn: lmdb.Transaction) -> None:
            for entry_id, (count, last) in hits.items():
                key = u64(entry_id)
                raw = txn.get(key, db=self.db["entries"])
                if raw is not None:
                    e = _entry_dec.decode(raw)
                    old = self._evict_key(e)
                    e.hits += count
                    e.last_hit = max(e.last_hit, last)
                    txn.put(key, _entry_enc.encode(e), db=self.db["entries"])
                    new = self._evict_key(e)
                    if new != old:  # lru/lfu: the entry moves back in the eviction order
                        txn.delete(old + key, db=self.db["evict"])
                        txn.put(new + key, u64(e.size), db=self.db["evict"])

        if hits:
            self.write(txn_fn)

    # ------------------------------------------------------------------------------------ reads
    def get(self, entry_id: int, txn: lmdb.Transaction | None = None) -> Entry | None:
        if txn is None:
            with self.read() as t:
                raw = t.get(u64(entry_id), db=self.db["entries"])
        else:
            raw = txn.get(u64(entry_id), db=self.db["entries"])
        return None if raw is None else _entry_dec.decode(raw)

    def get_exact(self, exact_key: bytes) -> tuple[int, Entry] | None:
        with self.read() as txn:
            key = txn.get(exact_key, db=self.db["exact"])
            if key is None:
                return None
            raw = txn.get(key, db=self.db["entries"])
        return None if raw is None else (int.from_bytes(key, "big"), _entry_dec.decode(raw))

    def seq(self) -> int:
        with self.read() as txn:
            return _u64_at(txn, b"seq", self.db["meta"])

    def log_since(self, seq: int) -> tuple[list[LogOp], int, bool]:
        """Log records after ``seq``: (ops, last seq, complete). Not complete when trimmed past ``seq``."""
        with self.read() as txn:
            cur = txn.cursor(db=self.db["log"])
            if not cur.set_range(u64(seq + 1)):
                return [], seq, True
            first = _U64.unpack(cur.key())[0]
            ops = [_log_dec.decode(v) for _, v in cur]
        last = ops[-1].seq if ops else seq
        return ops, last, first == seq + 1

    def vectors_of(self, ids: list[int]) -> tuple[list[int], np.ndarray]:
        """(ids that still have a vector, their vectors); entries deleted meanwhile are left out."""
        with self.read() as txn:
            found = [(i, b) for i in ids if (b := txn.get(u64(i), db=self.db["vectors"])) is not None]
        vecs = np.frombuffer(b"".join(b for _, b in found), np.float32).reshape(len(found), self.dim)
        return [i for i, _ in found], vecs

    def load_all(self) -> tuple[int, dict[bytes, tuple[np.ndarray, np.ndarray]]]:
        """Every live vector grouped by partition, read in bulk: (seq, {partition: (ids, vectors)})."""
        with self.read() as txn:
            seq = _u64_at(txn, b"seq", self.db["meta"])
            members = [k for k, _ in txn.cursor(db=self.db["members"])]
            vec_ids, vec_blobs = [], []
            for k, v in txn.cursor(db=self.db["vectors"]):
                vec_ids.append(k)
                vec_blobs.append(v)
        all_ids = np.frombuffer(b"".join(vec_ids), ">u8").astype(np.int64)
        all_vecs = np.frombuffer(b"".join(vec_blobs), np.float32).reshape(-1, self.dim)
        if not members:
            return seq, {}
        mem = np.frombuffer(b"".join(members), np.uint8).reshape(-1, 24)
        parts = mem[:, :16]
        ids = mem[:, 16:].copy().view(">u8").reshape(-1).astype(np.int64)
        rows = np.searchsorted(all_ids, ids)
        out: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        bounds = np.flatnonzero(np.any(parts[1:] != parts[:-1], axis=1)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(parts)], strict=True):
            out[parts[lo].tobytes()] = (ids[lo:hi], all_vecs[rows[lo:hi]])
        return seq, out

    def iter_entries(self) -> Iterator[tuple[int, Entry]]:
        with self.read() as txn:
            for k, v in txn.cursor(db=self.db["entries"]):
                yield int.from_bytes(k, "big"), _entry_dec.decode(v)

    def eviction_order(self, limit: int) -> list[tuple[bytes, int]]:
        """Up to ``limit`` (evict key, entry size) pairs, first victim first: a cursor walk, no scan."""
        with self.read() as txn:
            out: list[tuple[bytes, int]] = []
            for k, v in txn.cursor(db=self.db["evict"]):
                if len(out) >= limit:
                    break
                out.append((bytes(k), int(_U64.unpack(v)[0])))
        return out

    def evict(self, keys: list[bytes]) -> int:
        """Delete the entries of these ``eviction_order`` keys in one transaction; the number deleted.
        A key whose entry is already gone (stale) is dropped too, so it cannot stall later walks."""

        def txn_fn(txn: lmdb.Transaction) -> int:
            n = 0
            for k in keys:
                n += self._delete_in(txn, int.from_bytes(k[-8:], "big"))
                txn.delete(k, db=self.db["evict"])
            return n

        return int(self.write(txn_fn)) if keys else 0

    def namespace_ids(self, namespace: str) -> list[int]:
        prefix = ns_key(namespace)
        with self.read() as txn:
            cur = txn.cursor(db=self.db["spaces"])
            out: list[int] = []
            if cur.set_range(prefix):
                for k in cur.iternext(values=False):
                    if not bytes(k).startswith(prefix):
                        break
                    out.append(int.from_bytes(k[16:], "big"))
        return out

    def expired_ids(self, now: float, limit: int = 10_000) -> list[int]:
        bound = u64(int(now * 1000) + 1)
        with self.read() as txn:
            out: list[int] = []
            for k in txn.cursor(db=self.db["expiry"]).iternext(values=False):
                if bytes(k) >= bound or len(out) >= limit:
                    break
                out.append(int.from_bytes(k[8:], "big"))
        return out

    def counts(self) -> tuple[int, int]:
        """(entries, sum of their ``size``) without a scan: LMDB's count and a running total in meta."""
        with self.read() as txn:
            n = txn.stat(self.db["entries"])["entries"]
            raw = txn.get(b"bytes", db=self.db["meta"])
        return int(n), int(_U64.unpack(raw)[0]) if raw else 0

    def trim_log(self, keep_after: int) -> None:
        def txn_fn(txn: lmdb.Transaction) -> None:
            cur = txn.cursor(db=self.db["log"])
            if cur.first():
                while _U64.unpack(cur.key())[0] <= keep_after and cur.delete():
                    pass

        self.write(txn_fn)

    # ------------------------------------------------------------------------------------ snapshots
    @property
    def snapshot_path(self) -> Path:
        return self.path / "index.snapshot"

    def write_snapshot(self, snap: Snapshot) -> None:
        tmp = self.snapshot_path.with_suffix(f".tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                f.write(msgspec.msgpack.encode(snap))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.snapshot_path)
        except OSError as e:
            raise CacheDirError(f"cannot write index snapshot {self.snapshot_path}: {e}") from e
        finally:
            if tmp.exists():
                tmp.unlink()

    def read_snapshot(self) -> Snapshot | None:
        """The snapshot if present and readable for this encoder, else None (then the index is rebuilt)."""
        try:
            snap = _snap_dec.decode(self.snapshot_path.read_bytes())
        except (OSError, msgspec.DecodeError):
            return None
        if (snap.cache_id, snap.encoder, snap.dim) != (self.cache_id, self.encoder_name, self.dim):
            return None
        return snap


class _Txn:
    """A transaction counted in the store's gate, so a map resize waits until none is open."""

    __slots__ = ("store", "txn", "write")

    def __init__(self, store: Store, write: bool) -> None:
        self.store, self.write = store, write

    def __enter__(self) -> lmdb.Transaction:
        store = self.store
        with store._gate:
            while store._resizing:
                store._gate.wait()
            store._open_txns += 1
        try:
            try:
                self.txn = store.env.begin(write=self.write, buffers=False)
            except lmdb.MapResizedError:  # another process grew the map: adopt its size, then retry
                self._leave()
                store._resize(0)
                return self.__enter__()
        except BaseException:
            self._leave()
            raise
        return self.txn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None and self.write:
                self.txn.commit()
            else:
                self.txn.abort()
        finally:
            self._leave()

    def _leave(self) -> None:
        store = self.store
        with store._gate:
            store._open_txns -= 1
            if not store._open_txns:
                store._gate.notify_all()


def _open_env(path: Path, map_size: int, durable: bool) -> lmdb.Environment:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheDirError(f"cannot create cache directory {path}: {e}") from e
    if not path.is_dir():
        raise CacheDirError(f"cache path {path} is not a directory")
    try:
        return lmdb.open(
            str(path), map_size=map_size, max_dbs=len(_DBS) + 1, subdir=True, readahead=False,
            sync=durable, metasync=durable, max_readers=256, max_spare_txns=4,
        )
    except lmdb.InvalidError as e:
        raise CorruptCacheError(f"{path}/data.mdb is not an LMDB file (corrupt or foreign): {e}") from e
    except lmdb.VersionMismatchError as e:
        raise CorruptCacheError(f"{path}/data.mdb was written by an incompatible LMDB version: {e}") from e
    except lmdb.Error as e:
        raise CacheDirError(f"cannot open cache directory {path}: {e}") from e
