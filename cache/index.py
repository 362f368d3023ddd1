"""Per-partition vector index: exact while small, HNSW once it grows; deletes by swap or tombstone.

Measured on the 2-core box (384-d, k=8, one query): exact ``faiss.knn`` over a numpy buffer costs ~40 µs
at 2k vectors and ~240 µs at 10k (too close to the 0.3 ms budget), HNSW (M=32) ~50-150 µs at 10k-100k.
So a partition is exact up to ``IndexParams.exact_max`` vectors and becomes HNSW when it grows past it.

* exact phase: a contiguous float32 buffer; delete = move the last row into the hole (O(1)).
* HNSW phase: faiss cannot remove from HNSW, so a delete clears the row's bit in an "alive" bitmap that
  every search passes as an ``IDSelectorBitmap`` (the graph still routes through dead nodes, results
  never include them); when more than ``compact_ratio`` of the rows are dead, the index is rebuilt.

Rebuilds (exact -> HNSW, and compaction) take seconds to minutes at 100k rows, so inside an ``IndexSet``
they never run on the caller's thread: the partition is flagged and a background thread builds a
replacement from a copy of the live rows while the old structure keeps serving (dead rows stay masked
by the bitmap). Adds and removes that arrive meanwhile are logged by id and replayed onto the
replacement, in batches outside the lock and the last few under it; then the replacement is swapped in
by reassigning a handful of attributes. A lookup waits at most for one short write (a swap, a bitmap
update, a small HNSW add), never for a rebuild.

Locking: searches and snapshot serialisation take the partition's lock shared, writes take it
exclusive, so structures a search reads are never changed under it.

Vectors are unit-norm float32, so inner product is cosine similarity.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import faiss
import msgspec
import numpy as np

from cache.errors import CacheInputError

log = logging.getLogger(__name__)

_EMPTY_IDS = np.zeros(0, np.int64)
_EMPTY_SCORES = np.zeros(0, np.float32)
_ADD_CHUNK = 256  # rows per HNSW add while holding the lock: bounds how long one add delays a search
_BUILD_CHUNK = 4096  # rows per HNSW add in a background build, between checks of the stop flag
_FINAL_REPLAY = 64  # logged ops left for the swap itself (under the lock); the rest is replayed outside


class IndexParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    exact_max: int = 4096  # vectors searched exactly before switching to HNSW
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 96  # above ef_small_max vectors (recall >= 0.99 at 100k on random data)
    ef_search_small: int = 32  # up to ef_small_max vectors: measured recall 1.0 at 10k down to cosine 0.79, p99 291 µs (48: 469 µs)
    ef_small_max: int = 30_000
    compact_ratio: float = 0.25  # rebuild HNSW once this share of its rows is deleted
    rebuild_threads: int = 1  # OpenMP threads of a background build: leave the other core to lookups


class _RWLock:
    """Many readers (searches, snapshot serialisation) or one writer. Readers are preferred: a lookup
    never queues behind a waiting writer, only behind one that holds the lock."""

    __slots__ = ("_cond", "_readers", "_writer")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False

    def acquire_read(self) -> None:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    def __enter__(self) -> None:  # exclusive
        with self._cond:
            while self._writer or self._readers:
                self._cond.wait()
            self._writer = True

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._writer = False
            self._cond.notify_all()


Schedule = Callable[["PartitionIndex"], None]


class PartitionIndex:
    """The vectors of one partition. ``search`` returns entry ids and cosine scores, best first.

    With ``schedule`` None (a standalone index) rebuilds run inline in the call that triggers them;
    with a ``schedule`` callback (what ``IndexSet`` passes) the index only asks for one and someone
    calls ``rebuild()`` later on another thread.
    """

    def __init__(self, dim: int, params: IndexParams | None = None, schedule: Schedule | None = None):
        self.dim = dim
        self.params = params or IndexParams()
        self._schedule = schedule
        self._lock = _RWLock()
        self._vecs = np.zeros((16, dim), np.float32)  # rows [0, _n) are used
        self._ids = np.zeros(16, np.int64)
        self._n = 0
        self._pos: dict[int, int] = {}  # entry id -> row
        self._hnsw: Any = None  # faiss.IndexHNSWFlat once the partition outgrows exact search
        self._alive: np.ndarray | None = None  # bool per row (HNSW phase)
        self._bitmap: np.ndarray | None = None  # packed copy of _alive that faiss reads
        self._dead = 0
        self._oplog: list[tuple[bool, int]] | None = None  # (is_add, id) while a rebuild runs
        self._scheduled = False
        self._rebuilding = threading.Lock()  # one rebuild at a time

    # ------------------------------------------------------------------------------------ size
    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, entry_id: int) -> bool:
        return entry_id in self._pos

    @property
    def kind(self) -> str:
        return "hnsw" if self._hnsw is not None else "exact"

    @property
    def rebuild_pending(self) -> bool:
        return self._scheduled or self._oplog is not None

    def ids(self) -> np.ndarray:
        with self._lock:
            live = self._ids[: self._n]
            return live[self._alive[: self._n]] if self._alive is not None else live.copy()

    def vectors(self) -> np.ndarray:
        """Live vectors, in the order of ``ids()``."""
        with self._lock:
            live = self._vecs[: self._n]
            return live[self._alive[: self._n]] if self._alive is not None else live.copy()

    # ------------------------------------------------------------------------------------ writes
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = _as_matrix(vectors, self.dim)
        if len(ids) != len(vectors):
            raise CacheInputError(f"{len(ids)} ids for {len(vectors)} vectors")
        for lo in range(0, len(ids), _ADD_CHUNK):  # the lock is released between chunks
            with self._lock:
                self._add_locked(ids[lo : lo + _ADD_CHUNK], vectors[lo : lo + _ADD_CHUNK])
        if self._wants_rebuild():
            self._request_rebuild()

    def _add_locked(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self._pos:
            fresh = np.fromiter((i not in self._pos for i in ids.tolist()), bool, len(ids))
            if not fresh.all():
                ids, vectors = ids[fresh], vectors[fresh]  # re-adding a known id is a no-op
        if len(ids) == 0:
            return
        start = self._append(ids, vectors)
        if self._hnsw is not None:
            self._hnsw.add(vectors)
            self._grow_alive(start)
        if self._oplog is not None:
            self._oplog.extend((True, i) for i in ids.tolist())

    def remove(self, entry_ids: np.ndarray | list[int]) -> int:
        removed = 0
        with self._lock:
            for eid in np.asarray(entry_ids, np.int64).reshape(-1).tolist():
                row = self._pos.pop(eid, None)
                if row is None:
                    continue
                removed += 1
                if self._oplog is not None:
                    self._oplog.append((False, eid))
                if self._alive is not None:
                    self._alive[row] = False
                    self._dead += 1
                else:
                    self._swap_remove(row)
            if self._alive is not None and removed:
                self._bitmap = np.packbits(self._alive[: self._n], bitorder="little")
        if removed and self._wants_rebuild():
            self._request_rebuild()
        return removed

    # ------------------------------------------------------------------------------------ search
    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _as_matrix(vector, self.dim)
        if q.shape[0] != 1:
            raise CacheInputError("search takes one vector")
        self._lock.acquire_read()
        try:
            live = len(self._pos)
            if live == 0 or k <= 0:
                return _EMPTY_IDS, _EMPTY_SCORES
            k = min(k, live)
            if self._hnsw is None:
                scores, rows = faiss.knn(q, self._vecs[: self._n], k, metric=faiss.METRIC_INNER_PRODUCT)
            else:
                p = self.params
                ef = p.ef_search_small if self._n <= p.ef_small_max else p.ef_search
                params = faiss.SearchParametersHNSW(efSearch=max(ef, k))  # type: ignore[attr-defined]
                if self._dead and self._bitmap is not None:
                    params.sel = faiss.IDSelectorBitmap(self._n, faiss.swig_ptr(self._bitmap))
                scores, rows = self._hnsw.search(q, k, params=params)
            rows, scores = rows[0], scores[0]
            ok = rows >= 0
            return self._ids[rows[ok]], scores[ok].astype(np.float32, copy=False)
        finally:
            self._lock.release_read()

    # ------------------------------------------------------------------------------------ rebuilds
    def _wants_rebuild(self) -> bool:
        if self._hnsw is None:
            return self._n > self.params.exact_max
        return self._dead > self.params.compact_ratio * self._n

    def _request_rebuild(self) -> None:
        if self._schedule is None:
            with self._lock:
                if self._wants_rebuild():
                    self._rebuild_inline()
            return
        if not self._scheduled and self._oplog is None:
            self._scheduled = True
            self._schedule(self)

    def rebuild(self, stop: threading.Event | None = None) -> bool:
        """Build a replacement of the live rows without blocking searches, then swap it in; False when
        nothing was to do or ``stop`` was set meanwhile. Run by ``IndexSet``'s background thread."""
        if not self._rebuilding.acquire(blocking=False):
            return False
        try:
            return self._rebuild(stop)
        finally:
            self._rebuilding.release()

    def _rebuild(self, stop: threading.Event | None) -> bool:
        # The copy of the live rows (150 MB at 100k) holds the lock shared: searches go on, writes wait
        # and are logged from the moment it is taken.
        self._lock.acquire_read()
        try:
            self._scheduled = False
            if self._oplog is not None or not self._wants_rebuild():
                return False
            keep = self._alive[: self._n] if self._alive is not None else slice(None)
            ids, vecs = self._ids[: self._n][keep].copy(), self._vecs[: self._n][keep].copy()
            self._oplog = []  # no writer can run while the lock is held shared
        finally:
            self._lock.release_read()
        swapped = False
        try:
            fresh = PartitionIndex(self.dim, self.params, schedule=_never)
            if not fresh._load(ids, vecs, stop):
                return False
            done = 0
            while True:
                with self._lock:
                    if len(self._oplog) - done <= _FINAL_REPLAY:
                        fresh._replay(self._fetch(self._oplog[done:]))
                        self._adopt(fresh)
                        swapped = True
                        return True
                    batch = self._fetch(self._oplog[done:])
                    done = len(self._oplog)
                fresh._replay(batch)
                if stop is not None and stop.is_set():
                    return False
        finally:
            with self._lock:
                self._oplog = None
            if swapped and self._wants_rebuild():  # e.g. many deletes during the build
                self._request_rebuild()

    def _fetch(self, ops: list[tuple[bool, int]]) -> list[tuple[bool, int, np.ndarray | None]]:
        """Logged ops with the vectors of the adds (copied now, under the lock)."""
        out: list[tuple[bool, int, np.ndarray | None]] = []
        for is_add, eid in ops:
            if not is_add:
                out.append((False, eid, None))
            elif (row := self._pos.get(eid)) is not None:  # absent: removed later, and logged so
                out.append((True, eid, self._vecs[row].copy()))
        return out

    def _replay(self, ops: list[tuple[bool, int, np.ndarray | None]]) -> None:
        i = 0
        while i < len(ops):
            j = i
            while j < len(ops) and ops[j][0] == ops[i][0]:
                j += 1
            run = ops[i:j]
            if run[0][0]:
                self.add(np.array([o[1] for o in run], np.int64), np.stack([o[2] for o in run]))  # type: ignore[misc]
            else:
                self.remove([o[1] for o in run])
            i = j

    def _load(self, ids: np.ndarray, vecs: np.ndarray, stop: threading.Event | None) -> bool:
        """Fill an empty, private index; the HNSW graph in chunks so that ``stop`` is honoured."""
        self._append(ids, vecs)
        if self._n <= self.params.exact_max:
            return True
        self._hnsw = self._new_hnsw()
        for lo in range(0, self._n, _BUILD_CHUNK):
            if stop is not None and stop.is_set():
                return False
            self._hnsw.add(self._vecs[lo : min(self._n, lo + _BUILD_CHUNK)])
        self._alive = np.ones(len(self._vecs), bool)
        self._bitmap = np.packbits(self._alive[: self._n], bitorder="little")
        return True

    def _adopt(self, fresh: PartitionIndex) -> None:
        """Swap in ``fresh``'s structures (caller holds the exclusive lock)."""
        if fresh._alive is not None and fresh._dead and fresh._n - fresh._dead <= self.params.exact_max:
            fresh._rebuild_inline()  # mostly deleted meanwhile: small, so compacting to exact is cheap
        self._vecs, self._ids, self._n, self._pos = fresh._vecs, fresh._ids, fresh._n, fresh._pos
        self._hnsw, self._alive, self._bitmap, self._dead = fresh._hnsw, fresh._alive, fresh._bitmap, fresh._dead

    # ------------------------------------------------------------------------------------ snapshots
    def state(self) -> tuple[np.ndarray, np.ndarray, bytes | None]:
        """(ids, vectors, serialized HNSW or None) — what a snapshot needs to restore without rebuilding.
        Dead HNSW rows keep their place with id -1. Holds the lock shared: searches go on meanwhile."""
        self._lock.acquire_read()
        try:
            ids, vecs = self._ids[: self._n].copy(), self._vecs[: self._n].copy()
            if self._alive is not None:
                ids[~self._alive[: self._n]] = -1
            blob = faiss.serialize_index(self._hnsw).tobytes() if self._hnsw is not None else None
            return ids, vecs, blob
        finally:
            self._lock.release_read()

    @classmethod
    def restore(
        cls, dim: int, ids: np.ndarray, vectors: np.ndarray, hnsw: bytes | None,
        params: IndexParams | None = None, schedule: Schedule | None = None,
    ) -> PartitionIndex:
        index = cls(dim, params, schedule)
        ids, vectors = np.asarray(ids, np.int64), _as_matrix(vectors, dim)
        alive = ids >= 0
        if hnsw is None:
            index._append(ids[alive], vectors[alive])
            if index._n > index.params.exact_max:
                index._rebuild_inline()  # startup: nothing is served before the index exists
            return index
        loaded = faiss.deserialize_index(np.frombuffer(hnsw, np.uint8))
        if loaded.ntotal != len(ids) or loaded.d != dim:
            raise CacheInputError("HNSW snapshot does not match its vectors")
        index._append(ids, vectors)
        for dead_id in np.unique(ids[~alive]).tolist():
            index._pos.pop(dead_id, None)
        index._hnsw = loaded
        index._alive = np.zeros(len(index._vecs), bool)
        index._alive[: index._n] = alive
        index._bitmap = np.packbits(alive, bitorder="little")
        index._dead = int((~alive).sum())
        if index._wants_rebuild():
            index._request_rebuild()
        return index

    # ------------------------------------------------------------------------------------ internals
    def _append(self, ids: np.ndarray, vectors: np.ndarray) -> int:
        start, end = self._n, self._n + len(ids)
        if end > len(self._vecs):
            cap = max(end, 2 * len(self._vecs))
            self._vecs = _grown(self._vecs, cap)
            self._ids = _grown(self._ids, cap)
            if self._alive is not None:
                self._alive = _grown(self._alive, cap)
        self._vecs[start:end] = vectors
        self._ids[start:end] = ids
        self._pos.update(zip(ids.tolist(), range(start, end), strict=True))
        self._n = end
        return start

    def _grow_alive(self, start: int) -> None:
        assert self._alive is not None
        self._alive[start : self._n] = True
        self._bitmap = np.packbits(self._alive[: self._n], bitorder="little")

    def _swap_remove(self, row: int) -> None:
        last = self._n - 1
        if row != last:
            self._vecs[row] = self._vecs[last]
            moved = int(self._ids[last])
            self._ids[row] = moved
            self._pos[moved] = row
        self._n = last

    def _new_hnsw(self) -> Any:
        p = self.params
        hnsw = faiss.IndexHNSWFlat(self.dim, p.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = p.ef_construction
        return hnsw

    def _rebuild_inline(self) -> None:
        """Drop dead rows; HNSW if still large, else exact (caller holds the lock or owns the index)."""
        if self._alive is not None:
            keep = self._alive[: self._n]
            ids, vecs = self._ids[: self._n][keep], self._vecs[: self._n][keep]
            self._hnsw, self._alive, self._bitmap, self._dead, self._n = None, None, None, 0, 0
            self._pos.clear()
            self._append(ids, vecs)
        if self._n > self.params.exact_max:
            self._hnsw = self._new_hnsw()
            self._hnsw.add(self._vecs[: self._n])
            self._alive = np.ones(len(self._vecs), bool)
            self._bitmap = np.packbits(self._alive[: self._n], bitorder="little")
            self._dead = 0


def _never(index: PartitionIndex) -> None:
    """Schedule callback of a replacement under construction: it is rebuilt after the swap if needed."""


class IndexSet:
    """partition key (bytes) -> ``PartitionIndex``. A search can only see its own partition.

    With ``background=True`` (the default) rebuilds run on one daemon thread owned by the set, started
    on first need and stopped by ``close()``; with False they run inline (tests, offline tools).
    """

    def __init__(self, dim: int, params: IndexParams | None = None, background: bool = True):
        self.dim = dim
        self.params = params or IndexParams()
        self._parts: dict[bytes, PartitionIndex] = {}
        self._lock = threading.Lock()
        self._background = background
        self._queue: list[PartitionIndex] = []
        self._busy = 0  # rebuilds running
        self._cond = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None

    @property
    def schedule(self) -> Schedule | None:
        """The callback partitions use to ask for a rebuild (None: they rebuild inline)."""
        return self._enqueue if self._background else None

    def get(self, partition: bytes) -> PartitionIndex | None:
        return self._parts.get(partition)

    def partition(self, partition: bytes) -> PartitionIndex:
        index = self._parts.get(partition)
        if index is None:
            with self._lock:
                index = self._parts.get(partition)
                if index is None:
                    index = PartitionIndex(self.dim, self.params, self.schedule)
                    self._parts[partition] = index  # dict get/set are atomic; items() copies first
        return index

    def put(self, partition: bytes, index: PartitionIndex) -> None:
        with self._lock:
            self._parts[partition] = index

    def replace(self, parts: dict[bytes, PartitionIndex]) -> None:
        """Swap in a whole new set of partitions at once (a reload)."""
        with self._lock:
            self._parts = dict(parts)

    def search(self, partition: bytes, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self._parts.get(partition)
        if index is None:
            return _EMPTY_IDS, _EMPTY_SCORES
        return index.search(vector, k)

    def remove(self, partition: bytes, entry_ids: list[int]) -> int:
        index = self._parts.get(partition)
        return index.remove(entry_ids) if index is not None else 0

    def clear(self) -> None:
        self.replace({})

    def items(self) -> Iterator[tuple[bytes, PartitionIndex]]:
        return iter(list(self._parts.items()))

    def __len__(self) -> int:
        return sum(len(p) for p in list(self._parts.values()))

    # ------------------------------------------------------------------------------------ rebuilds
    def _enqueue(self, index: PartitionIndex) -> None:
        with self._cond:
            if self._stop.is_set():
                return
            self._queue.append(index)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="thrifty-index-rebuild", daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def _run(self) -> None:
        faiss.omp_set_num_threads(max(1, self.params.rebuild_threads))  # OpenMP threads of this thread only
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                index = self._queue.pop(0)
                self._busy += 1
            try:
                index.rebuild(self._stop)
            except Exception:  # a failed rebuild leaves the old structure serving; the next trigger retries
                log.exception("index rebuild failed")
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no rebuild is queued or running (benchmarks, tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the rebuild thread. A build inside faiss finishes its current chunk first; it is a
        daemon and touches only memory, so it is not waited for beyond ``timeout``."""
        with self._cond:
            self._stop.set()
            self._queue.clear()
            self._cond.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(timeout)


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise CacheInputError(f"expected vectors of dimension {dim}, got shape {np.asarray(vectors).shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise CacheInputError(f"expected float vectors, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _grown(arr: np.ndarray, cap: int) -> np.ndarray:
    out = np.zeros((cap, *arr.shape[1:]), arr.dtype)
    out[: len(arr)] = arr
    return out
