"""One SemanticCache shared by the engine's three kinds of threads at once: lookups (event loop), a
writer (inserts), the sweeper, plus a deleter, while the index switches to HNSW, compacts in the
background and evicts. No exception anywhere and never a wrong hit."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cache_helpers import CosinePolicy, request, unit

from cache import CacheConfig, EntryMeta, IndexParams, PartitionIndex, SemanticCache, scope

DIM = 64
N = 600
SYSTEMS = ("You are partition A.", "You are partition B.")


def test_concurrent_lookups_inserts_deletes_and_sweeps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    swaps = []
    adopt = PartitionIndex._adopt
    monkeypatch.setattr(PartitionIndex, "_adopt", lambda self, fresh: swaps.append(1) or adopt(self, fresh))
    vecs = unit(np.random.default_rng(0), N, DIM)  # random 64-d: any two are far below the 0.9 bar
    scopes = [scope(request(f"question {i}", system=SYSTEMS[i % 2])) for i in range(N)]
    cfg = CacheConfig(durable=False, max_entries=400, evict_fraction=0.2, evict_batch=8, refresh_interval_s=0.005,
                      snapshot_min_changes=150, index=IndexParams(exact_max=64, compact_ratio=0.2))
    c = SemanticCache.open(tmp_path / "c", "hashing-64", DIM, cfg, policy=CosinePolicy(threshold=0.9))
    errors: list[BaseException] = []
    ids: dict[int, int] = {}  # key -> entry id, published after its insert returned
    deleted: set[int] = set()  # entry ids whose delete has returned
    lock = threading.Lock()
    done = threading.Event()
    checked = {"hits": 0, "lookups": 0}

    def guard(fn):  # type: ignore[no-untyped-def]
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # reported by the main thread
                errors.append(e)
                done.set()
        return run

    @guard
    def writer() -> None:
        for i in range(N):
            ttl = 0.05 if i % 7 == 0 else None
            entry_id = c.insert(scopes[i], vecs[i], f"{i}".encode(), EntryMeta(model="m", ttl_s=ttl))
            with lock:
                ids[i] = entry_id
        done.set()

    @guard
    def deleter() -> None:
        rng = random.Random(1)
        while not done.is_set():
            with lock:
                known = list(ids.values())
            if known:
                victim = rng.choice(known)
                c.delete(victim)
                with lock:
                    deleted.add(victim)
            time.sleep(0.002)

    @guard
    def reader() -> None:
        rng = random.Random(threading.get_ident())
        while not done.is_set():
            i = rng.randrange(N)
            with lock:
                gone = set(deleted)
            hit = c.lookup(scopes[i], vecs[i]) if rng.random() < 0.8 else c.lookup_exact(scopes[i])
            checked["lookups"] += 1
            if hit is None:
                continue
            checked["hits"] += 1
            assert hit.response == f"{i}".encode(), f"asked for {i}, got the entry of {hit.response!r}"
            assert hit.id not in gone, f"entry {hit.id} came back after its delete returned"

    c.start_sweeper(0.01)
    threads = [threading.Thread(target=f) for f in (writer, deleter, reader, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    assert checked["hits"] > 50, checked  # the run really exercised hits, not just misses
    assert swaps, "no background rebuild was swapped in during the run"
    c.sweep()
    assert c.settle(30)
    c.catch_up(force=True)
    live = {int(i) for _, part in c._index.items() for i in part.ids()}
    stored = {i for i, _ in c.store.iter_entries()}
    assert live == stored and len(stored) <= 400  # the index holds exactly the stored entries
    for key, entry_id in ids.items():
        if key % 7 and c.store.get(entry_id) is not None:  # (every 7th has a 50 ms TTL)
            hit = c.lookup(scopes[key], vecs[key])
            assert hit is not None and hit.id == entry_id
    c.close()
