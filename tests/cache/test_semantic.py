"""SemanticCache: round trips, exact table, TTL, eviction, partitions, bad input, export/import."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest
from cache_helpers import CosinePolicy, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache import (
    CacheConfig,
    CacheFullError,
    CacheInputError,
    CorruptCacheError,
    EncoderMismatchError,
    EntryMeta,
    HashingEncoder,
    SchemaVersionError,
    SemanticCache,
    export_jsonl,
    import_jsonl,
    reads,
    scope,
    writes,
)

ENC = HashingEncoder(64)


def put(cache: SemanticCache, text: str, payload: bytes, **kw: object) -> int:
    s = scope(request(text, **kw.pop("req", {})), str(kw.pop("ns", "default")))  # type: ignore[arg-type]
    return cache.insert(s, ENC.encode([s.text])[0], payload, EntryMeta(**kw))  # type: ignore[arg-type]


def ask(cache: SemanticCache, text: str, threshold: float | None = None, ns: str = "default"):  # type: ignore[no-untyped-def]
    s = scope(request(text), ns)
    return cache.lookup_exact(s) or cache.lookup(s, ENC.encode([s.text])[0], threshold)


def test_round_trip_and_metadata(open_cache) -> None:  # type: ignore[no-untyped-def]
    c = open_cache()
    entry_id = put(c, "How do I sort a list in Python?", b'{"answer": 1}', model="m1", cost_usd=0.002,
                   tokens_in=12, tokens_out=30)
    hit = ask(c, "How do I sort a list in Python?")
    assert hit is not None and hit.id == entry_id and hit.reason == "exact" and hit.similarity == 1.0
    assert (hit.response, hit.model, hit.cost_usd, hit.tokens_in, hit.tokens_out) == (
        b'{"answer": 1}', "m1", 0.002, 12, 30)
    near = ask(c, "How do I sort a list in python ?", threshold=0.8)
    assert near is not None and near.id == entry_id and near.reason == "ok" and near.similarity < 1.0
    assert ask(c, "Best pizza dough recipe with a long fermentation") is None
    st_ = c.stats()
    assert (st_.entries, st_.exact_hits, st_.semantic_hits, st_.misses) == (1, 1, 1, 1)


def test_same_exact_request_replaces_the_older_answer(open_cache) -> None:  # type: ignore[no-untyped-def]
    c = open_cache()
    put(c, "q", b"old")
    put(c, "q", b"new")
    assert c.stats().entries == 1
    assert ask(c, "q").response == b"new"


def test_hits_survive_restart_and_index_is_rebuilt_or_restored(open_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = open_cache(tmp_path / "r")
    ids = [put(c, f"question number {i} about topic {i % 7}", str(i).encode()) for i in range(50)]
    assert ask(c, "question number 3 about topic 3").id == ids[3]
    c.close()
    c2 = open_cache(tmp_path / "r")  # no snapshot: rebuilt from LMDB vectors
    assert ask(c2, "question number 3 about topic 3 ", threshold=0.8).id == ids[3]
    c2.snapshot()
    put(c2, "written after the snapshot", b"late")
    c2.close()
    c3 = open_cache(tmp_path / "r")  # snapshot + log replay
    assert len(c3._index) == 51
    assert ask(c3, "written after the snapshot!", threshold=0.8).response == b"late"


def test_ttl_expired_entries_are_never_returned_and_swept(open_cache) -> None:  # type: ignore[no-untyped-def]
    c = open_cache()
    put(c, "short lived", b"x", ttl_s=0.05)
    put(c, "long lived", b"y", ttl_s=3600)
    put(c, "forever", b"z")
    assert ask(c, "short lived") is not None
    time.sleep(0.06)
    assert ask(c, "short lived") is None
    assert ask(c, "short lived!", threshold=0.5) is None or ask(c, "short lived!", threshold=0.5).response != b"x"
    assert c.sweep()["expired"] == 1
    assert c.stats().entries == 2 and len(c._index) == 2
    assert c.sweep(now=time.time() + 7200)["expired"] == 1
    assert ask(c, "forever").response == b"z"


@pytest.mark.parametrize(
    ("policy", "survivor"),
    [("fifo", {"e2", "e3", "e4"}), ("lru", {"e0", "e3", "e4"}), ("lfu", {"e0", "e3", "e4"}),
     ("largest-first", {"e0", "e2", "e4"})],
)
def test_eviction_policies(open_cache, policy: str, survivor: set[str]) -> None:  # type: ignore[no-untyped-def]
    c = open_cache(eviction=policy, max_entries=4, evict_fraction=0.25)
    sizes = {"e0": 10, "e1": 5000, "e2": 10, "e3": 3000, "e4": 10}
    for name in ["e0", "e1", "e2", "e3"]:
        put(c, name, b"x" * sizes[name])
        time.sleep(0.002)
    for _ in range(3):
        assert ask(c, "e0") is not None  # e0: old but popular and recently used
        time.sleep(0.002)
    assert ask(c, "e3") is not None
    c.flush_hits()
    put(c, "e4", b"x" * sizes["e4"])  # 5 > max 4: evict down to 3
    left = {name for name in sizes if ask(c, name) is not None}
    assert left == survivor
    assert c.stats().evicted == 2


def test_max_bytes_bound(open_cache) -> None:  # type: ignore[no-untyped-def]
    c = open_cache(max_bytes=20_000, eviction="fifo")
    for i in range(30):
        put(c, f"entry {i}", b"x" * 1500)
    st_ = c.stats()
    assert st_.bytes <= 20_000 and st_.evicted > 0
    assert ask(c, "entry 29") is not None and ask(c, "entry 0") is None


def test_full_map_grows_then_evicts_then_refuses_cleanly(tmp_path: Path) -> None:
    cfg = CacheConfig(map_size=256 << 10, max_map_size=1 << 20, durable=False)
    c = SemanticCache.open(tmp_path / "f", "hashing-64", 64, cfg, policy=CosinePolicy())
    for i in range(40):  # ~40 x 60 KB > 1 MB: growth to max, then eviction keeps it going
        put(c, f"big {i}", os.urandom(60_000))
    assert c.store.env.info()["map_size"] == 1 << 20
    assert c.stats().evicted > 0 and ask(c, "big 39") is not None
    with pytest.raises(CacheFullError, match="max_map_size"):
        put(c, "too big for any map", b"x" * (2 << 20))
    assert ask(c, "big 39") is not None  # the failed insert damaged nothing
    c.close()
    again = SemanticCache.open(tmp_path / "f", "hashing-64", 64, cfg, policy=CosinePolicy())
    assert ask(again, "big 39") is not None
    again.close()


def test_foreign_and_corrupt_directories_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "data.mdb").write_bytes(os.urandom(64 << 10))
    with pytest.raises(CorruptCacheError, match="not an LMDB"):
        SemanticCache.open(junk, "hashing-64", 64, policy=CosinePolicy())
    foreign = tmp_path / "foreign"
    env = lmdb.open(str(foreign), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()
    with pytest.raises(CorruptCacheError, match="did not write"):
        SemanticCache.open(foreign, "hashing-64", 64, policy=CosinePolicy())
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    with pytest.raises(Exception, match="directory"):
        SemanticCache.open(not_dir, "hashing-64", 64, policy=CosinePolicy())


def test_encoder_and_schema_mismatch_are_refused(tmp_path: Path, open_cache) -> None:  # type: ignore[no-untyped-def]
    c = open_cache(tmp_path / "m")
    put(c, "q", b"a")
    c.close()
    with pytest.raises(EncoderMismatchError, match="hashing-64"):
        SemanticCache.open(tmp_path / "m", "all-MiniLM-L6-v2", 384, policy=CosinePolicy())
    with pytest.raises(EncoderMismatchError):
        SemanticCache.open(tmp_path / "m", "hashing-64", 32, policy=CosinePolicy())
    env = lmdb.open(str(tmp_path / "m"), max_dbs=10)
    with env.begin(write=True) as txn:
        txn.put(b"schema", b"99", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(SchemaVersionError, match="99"):
        SemanticCache.open(tmp_path / "m", "hashing-64", 64, policy=CosinePolicy())


def test_bad_vectors_and_config_are_refused(open_cache) -> None:  # type: ignore[no-untyped-def]
    c = open_cache()
    s = scope(request("q"))
    with pytest.raises(CacheInputError, match="dimension"):
        c.insert(s, np.ones(10, np.float32), b"x")
    with pytest.raises(CacheInputError):
        c.insert(s, np.zeros(64, np.float32), b"x")
    with pytest.raises(CacheInputError, match="eviction"):
        CacheConfig(eviction="random-ish")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_any_unicode_round_trips(open_cache, text: str) -> None:  # type: ignore[no-untyped-def]
    c = open_cache()
    put(c, text, text.encode("utf-8", "surrogatepass"))
    hit = ask(c, text)
    assert hit is not None and hit.text == text


def test_empty_and_huge_prompts(open_cache) -> None:  # type: ignore[no-untyped-def]
    c = open_cache()
    huge = "lorem ipsum dolor " * 60_000  # ~1 MB
    put(c, "", b"empty")
    put(c, huge, b"huge")
    assert ask(c, "").response == b"empty"
    assert ask(c, huge).response == b"huge"
    s = scope(request(""))
    assert c.lookup(s, ENC.encode([""])[0]) is None  # empty prompt: exact-only


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prompts=st.lists(st.sampled_from(["weather in Paris", "weather in paris?", "capital of Peru", "sort a list"]),
                     min_size=1, max_size=6),
    systems=st.lists(st.sampled_from(["A", "B", ""]), min_size=1, max_size=3, unique=True),
    spaces=st.lists(st.sampled_from(["t1", "t2", "default"]), min_size=1, max_size=3, unique=True),
    models=st.lists(st.sampled_from(["auto", "gpt-4o"]), min_size=1, max_size=2, unique=True),
)
def test_zero_cross_partition_hits(open_cache, prompts: list[str], systems: list[str], spaces: list[str],
                                   models: list[str]) -> None:  # type: ignore[no-untyped-def]
    c = open_cache(policy=CosinePolicy(threshold=-1.0, first_bar=-1.0, top_k=50))  # accept anything found
    owner: dict[int, bytes] = {}
    for i, p in enumerate(prompts):
        s = scope(request(p, system=systems[i % len(systems)], model=models[i % len(models)]), spaces[i % len(spaces)])
        owner[c.insert(s, ENC.encode([p])[0], b"x")] = s.partition
    for p in ["weather in Paris", "unrelated question"]:
        for sy in systems:
            for ns in spaces:
                for m in models:
                    s = scope(request(p, system=sy, model=m), ns)
                    hit = c.lookup(s, ENC.encode([p])[0])
                    if hit is not None:
                        assert owner[hit.id] == s.partition
                    exact = c.lookup_exact(s)
                    if exact is not None:
                        assert owner[exact.id] == s.partition


def test_purge_namespace_and_delete(open_cache) -> None:  # type: ignore[no-untyped-def]
    c = open_cache()
    a = put(c, "q1", b"a", ns="t1")
    put(c, "q2", b"b", ns="t1")
    put(c, "q1", b"c", ns="t2")
    assert c.purge("default/t1") == 2  # the space label: scope()'s tenant "default", namespace "t1"
    assert ask(c, "q1", ns="t1") is None and ask(c, "q1", ns="t2").response == b"c"
    assert not c.delete(a)
    assert c.delete(put(c, "q9", b"z"))
    assert c.stats().entries == 1 and len(c._index) == 1


def test_export_import_round_trip(open_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = open_cache(tmp_path / "src")
    for i in range(30):
        put(src, f"prompt {i} ünïcode ✓", f"answer {i}".encode(), model="m", cost_usd=i / 100, ttl_s=3600)
    buf = io.BytesIO()
    assert export_jsonl(src, buf) == 30
    dst = open_cache(tmp_path / "dst")
    assert import_jsonl(dst, io.BytesIO(buf.getvalue())) == 30
    hit = ask(dst, "prompt 7 ünïcode ✓!", threshold=0.8)
    assert hit is not None and hit.response == b"answer 7" and hit.cost_usd == 0.07
    other = open_cache(tmp_path / "other", dim=32, name="hashing-32")
    with pytest.raises(EncoderMismatchError, match="reembed"):
        import_jsonl(other, io.BytesIO(buf.getvalue()))
    assert import_jsonl(other, io.BytesIO(buf.getvalue()), reembed=HashingEncoder(32)) == 30
    s = scope(request("prompt 7 ünïcode ✓"))
    assert other.lookup(s, HashingEncoder(32).encode([s.text])[0]).response == b"answer 7"
    with pytest.raises(CacheInputError, match="header"):
        import_jsonl(dst, io.BytesIO(b"not json\n"))


def test_modes() -> None:
    assert [(reads(m), writes(m)) for m in ("on", "off", "read-only", "write-only")] == [
        (True, True), (False, False), (True, False), (False, True)]
    with pytest.raises(CacheInputError, match="unknown cache mode"):
        reads("sometimes")


def test_background_sweeper_expires_entries(open_cache) -> None:  # type: ignore[no-untyped-def]
    c = open_cache()
    put(c, "ephemeral", b"x", ttl_s=0.05)
    c.start_sweeper(interval_s=0.05)
    deadline = time.monotonic() + 5
    while c.stats().entries and time.monotonic() < deadline:
        time.sleep(0.02)
    assert c.stats().entries == 0 and c.stats().expired == 1
    c.close()  # stops the thread
    assert c._sweeper is not None and not c._sweeper.is_alive()


def test_map_growth_while_other_threads_read(tmp_path: Path) -> None:
    import threading

    cfg = CacheConfig(map_size=128 << 10, max_map_size=64 << 20, durable=False)
    c = SemanticCache.open(tmp_path / "g", "hashing-64", 64, cfg, policy=CosinePolicy())
    put(c, "anchor", b"a")
    stop, errors = threading.Event(), []

    def reader() -> None:
        while not stop.is_set():
            try:
                assert ask(c, "anchor").response == b"a"
                time.sleep(0.0005)  # leave the GIL to the writer now and then
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(60):  # ~1.2 MB through a 128 KB map: several resizes under concurrent reads
        put(c, f"filler {i}", os.urandom(20_000))
    stop.set()
    for t in threads:
        t.join()
    assert not errors and c.store.env.info()["map_size"] > 128 << 10
    assert c.stats().entries == 61
    c.close()


def test_snapshot_of_another_cache_is_ignored(open_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = open_cache(tmp_path / "a")
    put(a, "only in a", b"a")
    a.snapshot()
    a.close()
    b = open_cache(tmp_path / "b")
    for i in range(3):
        put(b, f"only in b {i}", b"b")
    b.close()
    (tmp_path / "b" / "index.snapshot").write_bytes((tmp_path / "a" / "index.snapshot").read_bytes())
    b2 = open_cache(tmp_path / "b")
    assert len(b2._index) == 3 and ask(b2, "only in b 1 ", threshold=0.8) is not None


def test_insert_many_is_one_write_and_all_or_nothing(tmp_path: Path) -> None:
    cache = SemanticCache.open(tmp_path / "c", ENC.name, ENC.dim, policy=CosinePolicy(0.9))
    try:
        texts = [f"question number {i} about caching" for i in range(50)]
        scopes = [scope(request(t)) for t in texts]
        vecs = ENC.encode(texts)
        ids = cache.insert_many([(s, v, f"answer {i}".encode()) for i, (s, v) in enumerate(zip(scopes, vecs, strict=True))])
        assert len(set(ids)) == 50
        exact = cache.lookup_exact(scopes[7])
        assert exact is not None and exact.response == b"answer 7"
        hit = cache.lookup(scopes[9], vecs[9])
        assert hit is not None and hit.response == b"answer 9"
        before = cache.stats().entries
        with pytest.raises(CacheInputError):
            cache.insert_many([(scopes[0], vecs[0], b"x"), (scopes[1], np.zeros(ENC.dim, np.float32), b"y")])
        assert cache.stats().entries == before
    finally:
        cache.close()
