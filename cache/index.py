"""Per-partition vector index: exact while small, HNSW once it grows; deletes by swap or tombstone.

Measured on the 2-core box (384-d, k=8, one query): exact ``faiss.knn`` over a numpy buffer costs ~40 µs
at 2k vectors and ~240 µs at 10k (too close to the 0.3 ms budget), HNSW (M=32) ~50-150 µs at 10k-100k.
So a partition is exact up to ``IndexParams.exact_max`` vectors and becomes HNSW when it grows past it.

* exact phase: a contiguous float32 buffer; delete = move the last row into the hole (O(1)).
* HNSW phase: faiss cannot remove from HNSW, so a delete clears the row's bit in an "alive" bitmap that
  every search passes as an ``IDSelectorBitmap`` (the graph still routes through dead nodes, results
  never include them); when more than ``compact_ratio`` of the rows are dead, the index is rebuilt.

Vectors are unit-norm float32, so inner product is cosine similarity.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import faiss
import msgspec
import numpy as np

from cache.errors import CacheInputError

_EMPTY_IDS = np.zeros(0, np.int64)
_EMPTY_SCORES = np.zeros(0, np.float32)


class IndexParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    exact_max: int = 4096  # vectors searched exactly before switching to HNSW
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 96  # above ef_small_max vectors (recall >= 0.99 at 100k on random data)
    ef_search_small: int = 48  # up to ef_small_max vectors: the graph is small, fewer hops suffice
    ef_small_max: int = 30_000
    compact_ratio: float = 0.25  # rebuild HNSW once this share of its rows is deleted


class PartitionIndex:
    """The vectors of one partition. ``search`` returns entry ids and cosine scores, best first."""

    def __init__(self, dim: int, params: IndexParams | None = None):
        self.dim = dim
        self.params = params or IndexParams()
        self._lock = threading.RLock()
        self._vecs = np.zeros((16, dim), np.float32)  # rows [0, _n) are used
        self._ids = np.zeros(16, np.int64)
        self._n = 0
        self._pos: dict[int, int] = {}  # entry id -> row
        self._hnsw: Any = None  # faiss.IndexHNSWFlat once the partition outgrows exact search
        self._alive: np.ndarray | None = None  # bool per row (HNSW phase)
        self._bitmap: np.ndarray | None = None  # packed copy of _alive that faiss reads
        self._dead = 0

    # ------------------------------------------------------------------------------------ size
    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, entry_id: int) -> bool:
        return entry_id in self._pos

    @property
    def kind(self) -> str:
        return "hnsw" if self._hnsw is not None else "exact"

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
        with self._lock:
            fresh = np.array([int(i) not in self._pos for i in ids], bool) if self._pos else None
            if fresh is not None and not fresh.all():
                ids, vectors = ids[fresh], vectors[fresh]  # re-adding a known id is a no-op
            if len(ids) == 0:
                return
            start = self._append(ids, vectors)
            if self._hnsw is not None:
                self._hnsw.add(vectors)
                self._grow_alive(start)
            elif self._n > self.params.exact_max:
                self._build_hnsw()

    def remove(self, entry_ids: np.ndarray | list[int]) -> int:
        removed = 0
        with self._lock:
            for eid in np.asarray(entry_ids, np.int64).reshape(-1).tolist():
                row = self._pos.pop(eid, None)
                if row is None:
                    continue
                removed += 1
                if self._alive is not None:
                    self._alive[row] = False
                    self._dead += 1
                else:
                    self._swap_remove(row)
            if self._alive is not None and removed:
                self._bitmap = np.packbits(self._alive[: self._n], bitorder="little")
                if self._dead > self.params.compact_ratio * self._n:
                    self._compact()
        return removed

    # ------------------------------------------------------------------------------------ search
    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _as_matrix(vector, self.dim)
        if q.shape[0] != 1:
            raise CacheInputError("search takes one vector")
        with self._lock:
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

    # ------------------------------------------------------------------------------------ snapshots
    def state(self) -> tuple[np.ndarray, np.ndarray, bytes | None]:
        """(ids, vectors, serialized HNSW or None) — what a snapshot needs to restore without rebuilding."""
        with self._lock:
            if self._dead:
                self._compact()
            ids, vecs = self._ids[: self._n].copy(), self._vecs[: self._n].copy()
            blob = faiss.serialize_index(self._hnsw).tobytes() if self._hnsw is not None else None
            return ids, vecs, blob

    @classmethod
    def restore(
        cls, dim: int, ids: np.ndarray, vectors: np.ndarray, hnsw: bytes | None, params: IndexParams | None = None
    ) -> PartitionIndex:
        index = cls(dim, params)
        index._append(np.asarray(ids, np.int64), _as_matrix(vectors, dim))
        if hnsw is not None:
            loaded = faiss.deserialize_index(np.frombuffer(hnsw, np.uint8))
            if loaded.ntotal != index._n or loaded.d != dim:
                raise CacheInputError("HNSW snapshot does not match its vectors")
            index._hnsw = loaded
            index._alive = np.ones(len(index._vecs), bool)
            index._bitmap = np.packbits(index._alive[: index._n], bitorder="little")
        elif index._n > index.params.exact_max:
            index._build_hnsw()
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

    def _build_hnsw(self) -> None:
        p = self.params
        hnsw = faiss.IndexHNSWFlat(self.dim, p.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = p.ef_construction
        hnsw.add(self._vecs[: self._n])
        self._hnsw = hnsw
        self._alive = np.ones(len(self._vecs), bool)
        self._bitmap = np.packbits(self._alive[: self._n], bitorder="little")
        self._dead = 0

    def _compact(self) -> None:
        """Drop dead rows; rebuild HNSW if still large, else fall back to exact search."""
        assert self._alive is not None
        keep = self._alive[: self._n]
        ids, vecs = self._ids[: self._n][keep], self._vecs[: self._n][keep]
        self._hnsw, self._alive, self._bitmap, self._dead, self._n = None, None, None, 0, 0
        self._pos.clear()
        self._append(ids, vecs)
        if self._n > self.params.exact_max:
            self._build_hnsw()


class IndexSet:
    """partition key (bytes) -> ``PartitionIndex``. A search can only see its own partition."""

    def __init__(self, dim: int, params: IndexParams | None = None):
        self.dim = dim
        self.params = params or IndexParams()
        self._parts: dict[bytes, PartitionIndex] = {}
        self._lock = threading.Lock()

    def get(self, partition: bytes) -> PartitionIndex | None:
        return self._parts.get(partition)

    def partition(self, partition: bytes) -> PartitionIndex:
        index = self._parts.get(partition)
        if index is None:
            with self._lock:
                index = self._parts.setdefault(partition, PartitionIndex(self.dim, self.params))
        return index

    def put(self, partition: bytes, index: PartitionIndex) -> None:
        self._parts[partition] = index

    def search(self, partition: bytes, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        index = self._parts.get(partition)
        if index is None:
            return _EMPTY_IDS, _EMPTY_SCORES
        return index.search(vector, k)

    def remove(self, partition: bytes, entry_ids: list[int]) -> int:
        index = self._parts.get(partition)
        return index.remove(entry_ids) if index is not None else 0

    def clear(self) -> None:
        self._parts = {}

    def items(self) -> Iterator[tuple[bytes, PartitionIndex]]:
        return iter(list(self._parts.items()))

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts.values())


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
