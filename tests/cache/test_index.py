"""Per-partition index: agreement with brute force (exact and HNSW phases), deletes, snapshots."""

from __future__ import annotations

import numpy as np
import pytest
from cache_helpers import unit
from hypothesis import given, settings
from hypothesis import strategies as st

from cache import CacheInputError, IndexParams, IndexSet, PartitionIndex

DIM = 32


def brute(ids: np.ndarray, vecs: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = vecs @ q
    order = np.argsort(-s, kind="stable")[:k]
    return ids[order], s[order]


def clustered(rng: np.random.Generator, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Points around a few topics, and queries that paraphrase (cos ~0.8-0.95) some of them."""
    centers = unit(rng, 12, dim)
    pts = centers[rng.integers(0, 12, n)] + 0.5 * unit(rng, n, dim)
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    src = pts[rng.integers(0, n, 40)]
    qs = src + rng.uniform(0.3, 0.6, (40, 1)).astype(np.float32) * unit(rng, 40, dim)
    return pts.astype(np.float32), (qs / np.linalg.norm(qs, axis=1, keepdims=True)).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), k=st.integers(1, 10),
       exact_max=st.sampled_from([50, 10_000]), drop=st.floats(0, 0.5))
def test_index_agrees_with_brute_force_above_threshold(seed: int, n: int, k: int, exact_max: int, drop: float) -> None:
    rng = np.random.default_rng(seed)
    pts, qs = clustered(rng, n, DIM)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    index = PartitionIndex(DIM, IndexParams(exact_max=exact_max, ef_search=64))
    index.add(ids, pts)
    gone = ids[rng.random(n) < drop]
    index.remove(gone)
    keep = ~np.isin(ids, gone)
    live_ids, live = ids[keep], pts[keep]
    assert len(index) == len(live_ids)
    found_above = wanted_above = 0
    for q in qs:
        got_ids, got_scores = index.search(q, k)
        want_ids, want_scores = brute(live_ids, live, q, k)
        assert not set(got_ids.tolist()) & set(gone.tolist()), "a deleted id came back"
        assert np.all(np.diff(got_scores) <= 1e-6), "results not best-first"
        above = want_ids[want_scores >= 0.8]
        wanted_above += len(above)
        found_above += len(set(above.tolist()) & set(got_ids.tolist()))
        if index.kind == "exact":
            np.testing.assert_allclose(got_scores, want_scores, atol=1e-5)
    assert found_above >= 0.99 * wanted_above


def test_switches_to_hnsw_and_back_after_deletes() -> None:
    rng = np.random.default_rng(1)
    pts = unit(rng, 300, DIM)
    index = PartitionIndex(DIM, IndexParams(exact_max=100, compact_ratio=0.25))
    index.add(np.arange(300), pts)
    assert index.kind == "hnsw"
    index.remove(np.arange(250))
    assert index.kind == "exact" and len(index) == 50
    ids, scores = index.search(pts[260], 1)
    assert ids[0] == 260 and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_snapshot_state_restores_identical_results() -> None:
    rng = np.random.default_rng(2)
    pts = unit(rng, 500, DIM)
    index = PartitionIndex(DIM, IndexParams(exact_max=100))
    index.add(np.arange(500), pts)
    index.remove([3, 4, 5])
    ids, vecs, blob = index.state()
    assert blob is not None
    again = PartitionIndex.restore(DIM, ids, vecs, blob, IndexParams(exact_max=100))
    for q in pts[:20]:
        np.testing.assert_array_equal(index.search(q, 5)[0], again.search(q, 5)[0])


def test_readding_an_id_is_a_noop_and_bad_shapes_are_refused() -> None:
    index = PartitionIndex(DIM)
    v = unit(np.random.default_rng(3), 2, DIM)
    index.add(np.array([1]), v[:1])
    index.add(np.array([1]), v[1:])
    assert len(index) == 1
    with pytest.raises(CacheInputError, match="dimension"):
        index.add(np.array([2]), np.ones((1, DIM + 1), np.float32))
    with pytest.raises(CacheInputError):
        index.search(np.ones(DIM - 1, np.float32), 1)


def test_index_set_never_searches_another_partition() -> None:
    sets = IndexSet(DIM)
    v = unit(np.random.default_rng(4), 1, DIM)
    sets.partition(b"a" * 16).add(np.array([7]), v)
    assert sets.search(b"b" * 16, v[0], 3)[0].size == 0
    assert sets.search(b"a" * 16, v[0], 3)[0].tolist() == [7]
