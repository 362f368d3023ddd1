"""Off-request-path upkeep: background index rebuilds (swap + replay of concurrent writes) and eviction
by a walk of the store's ordered ``evict`` table instead of a scan of every entry."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cache_helpers import CosinePolicy, request, unit

from cache import CacheConfig, HashingEncoder, IndexParams, IndexSet, PartitionIndex, SemanticCache, scope

DIM = 32
ENC = HashingEncoder(64)
P = b"p" * 16


def _paused_rebuild(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make the next rebuild stop right after building its replacement, until ``go`` is set."""
    built, go = threading.Event(), threading.Event()
    real = PartitionIndex._load

    def load(self: PartitionIndex, ids: np.ndarray, vecs: np.ndarray, stop: threading.Event | None) -> bool:
        ok = real(self, ids, vecs, stop)
        built.set()
        assert go.wait(30), "test never released the rebuild"
        return ok

    monkeypatch.setattr(PartitionIndex, "_load", load)
    return built, go


def test_compaction_runs_in_background_and_replays_concurrent_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    pts = unit(rng, 700, DIM)
    sets = IndexSet(DIM, IndexParams(exact_max=100, compact_ratio=0.25))
    index = sets.partition(P)
    index.add(np.arange(400), pts[:400])
    assert sets.wait_idle(30) and index.kind == "hnsw"  # the exact -> HNSW switch happened off-thread
    built, go = _paused_rebuild(monkeypatch)
    index.remove(np.arange(150))  # 150/400 dead > 25 %: asks for a rebuild, does not run it here
    assert built.wait(30), "no background rebuild started"
    assert index.rebuild_pending and index._dead == 150  # the old structure still serves
    # While the replacement waits to be swapped in, the index keeps answering (a lookup that waited for
    # the rebuild would hang here) and takes writes, which must reach the replacement.
    ids, _ = index.search(pts[200], 3)
    assert ids[0] == 200 and not set(ids.tolist()) & set(range(150))
    index.remove(np.arange(150, 220))
    index.add(np.arange(400, 700), pts[400:])
    index.remove([650, 651])
    assert index.search(pts[210], 1)[0].tolist() != [210]
    go.set()
    assert sets.wait_idle(30)
    live = sorted(set(range(220, 700)) - {650, 651})
    assert len(index) == len(live) and sorted(index.ids().tolist()) == live
    # The rows deleted during the build stay masked in the replacement (70 of 550 < 25 %: no new rebuild).
    assert index._dead == 70 and index.kind == "hnsw" and not index.rebuild_pending
    for i in (220, 399, 400, 699):
        got, scores = index.search(pts[i], 1)
        assert got.tolist() == [i] and scores[0] == pytest.approx(1.0, abs=1e-5)
    for gone in (0, 219, 650):
        assert gone not in index.search(pts[gone], 5)[0].tolist()
    sets.close()


def test_rebuild_back_to_exact_and_close_stops_the_worker() -> None:
    rng = np.random.default_rng(1)
    pts = unit(rng, 300, DIM)
    sets = IndexSet(DIM, IndexParams(exact_max=100))
    index = sets.partition(P)
    index.add(np.arange(300), pts)
    assert sets.wait_idle(30) and index.kind == "hnsw"
    index.remove(np.arange(250))
    assert sets.wait_idle(30) and index.kind == "exact" and len(index) == 50
    assert index.search(pts[260], 1)[0].tolist() == [260]
    sets.close()
    assert sets._worker is not None and not sets._worker.is_alive()


def test_snapshot_with_dead_rows_restores_without_compacting() -> None:
    rng = np.random.default_rng(2)
    pts = unit(rng, 400, DIM)
    index = PartitionIndex(DIM, IndexParams(exact_max=100, compact_ratio=0.9))
    index.add(np.arange(400), pts)
    index.remove(np.arange(0, 400, 3))
    ids, vecs, blob = index.state()
    assert blob is not None and (ids == -1).sum() == len(range(0, 400, 3))  # dead rows kept, marked
    again = PartitionIndex.restore(DIM, ids, vecs, blob, IndexParams(exact_max=100, compact_ratio=0.9))
    assert len(again) == len(index)
    for q in pts[:30]:
        np.testing.assert_array_equal(index.search(q, 5)[0], again.search(q, 5)[0])
        assert not {int(i) for i in again.search(q, 5)[0]} & set(range(0, 400, 3))


# ------------------------------------------------------------------------------------------ eviction
def _put(c: SemanticCache, text: str, payload: bytes) -> int:
    s = scope(request(text))
    return c.insert(s, ENC.encode([s.text])[0], payload)


def _open(path: Path, **config: object) -> SemanticCache:
    return SemanticCache.open(path, "hashing-64", 64, CacheConfig(durable=False, **config), policy=CosinePolicy())  # type: ignore[arg-type]


def test_eviction_walks_the_ordered_table_without_scanning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = _open(tmp_path / "c", max_entries=100, evict_fraction=0.5, evict_batch=5, eviction="fifo")
    ids = [_put(c, f"question {i}", b"x") for i in range(100)]

    def no_scan() -> None:
        raise AssertionError("eviction scanned every entry")

    monkeypatch.setattr(c.store, "iter_entries", no_scan)
    _put(c, "question 100", b"x")  # 101 > 100: the insert evicts one bounded batch only
    assert c.stats().entries == 96 and c.stats().evicted == 5
    assert all(c.store.get(i) is None for i in ids[:5]) and c.store.get(ids[5]) is not None
    assert c.sweep()["evicted"] == 46  # the sweeper finishes: down to (1 - 0.5) x 100
    assert c.stats().entries == 50 and c.store.get(ids[51]) is not None and c.store.get(ids[50]) is None
    c.close()


def test_policy_change_rebuilds_the_order_and_stale_keys_do_not_stall(tmp_path: Path) -> None:
    c = _open(tmp_path / "c", eviction="fifo")
    small = [_put(c, f"small {i}", b"x" * 10) for i in range(5)]
    big = _put(c, "big one", b"x" * 5000)
    c.close()
    c = _open(tmp_path / "c", eviction="largest-first", max_entries=5, evict_fraction=0.2)
    assert c.store.eviction_order(1)[0][0].endswith(big.to_bytes(8, "big"))
    with c.store.env.begin(write=True) as txn:  # a key whose entry is gone (e.g. another writer's)
        txn.put(b"\x00" * 16 + (10**9).to_bytes(8, "big"), (1).to_bytes(8, "big"), db=c.store.db["evict"])
    assert c.sweep()["evicted"] == 2  # 6 > 5: down to 4 — the big entry first, then the oldest small
    assert c.store.get(big) is None and c.store.get(small[0]) is None and c.store.get(small[1]) is not None
    assert len(c.store.eviction_order(100)) == c.stats().entries == 4
    c.close()


def test_lru_order_follows_flushed_hits(tmp_path: Path) -> None:
    c = _open(tmp_path / "c", eviction="lru")
    ids = [_put(c, f"entry {i}", b"x") for i in range(3)]
    time.sleep(0.002)
    assert c.lookup_exact(scope(request("entry 0"))) is not None
    c.flush_hits()
    order = [int.from_bytes(k[-8:], "big") for k, _ in c.store.eviction_order(10)]
    assert order == [ids[1], ids[2], ids[0]]
    c.close()
