"""The adaptive gate (cache/adaptive.py): decisions from labels, persistence, and its hook in the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cache_helpers import request

from cache import scope
from cache.adaptive import AdaptiveConfig, AdaptiveGate, wilson_interval, wilson_upper
from cache.errors import CacheInputError

NS = "t/default"


def test_no_labels_means_explore_and_labels_move_the_bound() -> None:
    gate = AdaptiveGate(AdaptiveConfig(delta=0.05, explore_rate=0.0, bound="request"))
    assert gate.decide(NS, 1, 0.95) == "explore"  # nothing known: not sure enough to serve
    assert gate.decide(NS, 1, 0.5) == "refuse"  # under the floor
    for i in range(300):  # the namespace: reuse at about 0.95 is right
        gate.learn(NS, 100 + i, 0.95, True)
    assert gate.error_bound(NS, 1, 0.95) < 0.05
    assert gate.decide(NS, 1, 0.95) == "serve"
    # This entry was wrong for a request closer than this one: refused, whatever the namespace says.
    gate.learn(NS, 1, 0.97, False)
    assert gate.decide(NS, 1, 0.95) == "refuse"
    assert gate.decide(NS, 2, 0.95) == "serve"  # its neighbours are not
    assert gate.decide("other/ns", 2, 0.95) == "explore"  # another space learns nothing from this one


def test_entry_labels_lower_its_own_threshold() -> None:
    gate = AdaptiveGate(AdaptiveConfig(delta=0.05, explore_rate=0.0, model_prior=(0.0, 0.0), bound="request"))
    for i in range(200):  # at 0.85 the namespace is often wrong: no serving there on the prior alone
        gate.learn(NS, 1000 + i, 0.85, i % 3 != 0)
    assert gate.decide(NS, 7, 0.86) == "explore"
    for i in range(200):  # ... but when an entry was right at a score, later requests at least as close are too
        gate.learn(NS, 2000 + i, 0.80, True)
        gate.learn(NS, 2000 + i, 0.86, True)
    gate.learn(NS, 7, 0.84, True)
    assert gate.decide(NS, 7, 0.86) == "serve"
    assert gate.approved(NS, 7, 0.86) and not gate.approved(NS, 7, 0.83) and not gate.approved(NS, 8, 0.99)


def test_labels_persist(tmp_path: Path) -> None:
    path = tmp_path / "adaptive.sqlite3"
    gate = AdaptiveGate(AdaptiveConfig(explore_rate=0.0), path)
    gate.learn(NS, 5, 0.9, False)
    gate.close()
    again = AdaptiveGate(AdaptiveConfig(explore_rate=0.0), path)
    assert again.decide(NS, 5, 0.88) == "refuse"
    assert again.summary(NS) == {"labels": 1, "bad": 1, "entries": 1}
    again.close()


def test_workers_sharing_the_file_see_each_others_labels(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import cache.adaptive as adaptive

    path = tmp_path / "adaptive.sqlite3"
    one = AdaptiveGate(AdaptiveConfig(explore_rate=0.0), path)
    two = AdaptiveGate(AdaptiveConfig(explore_rate=0.0), path)
    one.learn(NS, 9, 0.95, False)
    monkeypatch.setattr(adaptive, "_SYNC_EVERY_S", 0.0)
    assert two.decide(NS, 9, 0.93) == "refuse"  # learned by the other worker, read on the next decision
    two.learn(NS, 9, 0.99, True)
    assert one.summary(NS) == {"labels": 1, "bad": 1, "entries": 1}  # not yet refreshed...
    one.refresh()
    assert one.summary(NS) == {"labels": 2, "bad": 1, "entries": 1}  # ... now, each label once
    one.close()
    two.close()


def test_config_errors_name_the_key() -> None:
    for kw, key in (({"delta": 0.0}, "delta"), ({"confidence": 0.42}, "confidence"),
                    ({"explore_rate": 2.0}, "explore_rate")):
        with pytest.raises(CacheInputError, match=key):
            AdaptiveConfig(**kw)  # type: ignore[arg-type]


def test_wilson() -> None:
    assert wilson_upper(0, 0, 1.64) == 1.0
    lo, hi = wilson_interval(2, 100)
    assert 0.005 < lo < 0.02 < hi < 0.08
    assert wilson_upper(0, 150, 1.96) < 0.03


def test_gate_hook_in_lookup(open_cache, encoder) -> None:  # type: ignore[no-untyped-def]
    cache = open_cache()  # CosinePolicy: threshold 0.9
    gate = AdaptiveGate(AdaptiveConfig(explore_rate=0.0, floor=0.5, bound="request"))
    sc = scope(request("alpha beta gamma delta"), namespace="default", tenant="t")
    vec = encoder.encode(["alpha beta gamma delta"])[0]
    entry_id = cache.insert(sc, vec, b'{"x": 1}')
    other = np.random.default_rng(0).standard_normal(vec.size).astype(np.float32)
    other -= (other @ vec) * vec
    other /= np.linalg.norm(other)
    near = (0.8 * vec + 0.6 * other).astype(np.float32)  # cosine 0.8 with the entry
    sim = float(vec @ near)
    assert 0.5 < sim < 0.9  # under the static threshold
    q = scope(request("alpha beta gamma delta!"), namespace="default", tenant="t")
    cache.gate, cache.gate_adaptive = gate, True
    hit = cache.lookup(q, near)
    assert hit is not None and hit.explore and hit.id == entry_id  # unsure: explore, not serve
    assert cache.stats().explored == 1
    for i in range(400):
        gate.learn(q.namespace, 10_000 + i, sim, True)
    hit = cache.lookup(q, near)
    assert hit is not None and not hit.explore and hit.score == pytest.approx(sim, abs=1e-5)
    # Near-miss probe without adaptive serving: the candidate under the threshold is named, not served.
    cache.gate = None
    probe: dict = {"margin": 1.0}
    assert cache.lookup(q, near, probe=probe) is None
    assert probe["near"][0] == entry_id
    # ... and once approved (a good label at or under this score), served.
    cache.gate, cache.gate_adaptive = AdaptiveGate(AdaptiveConfig()), False
    cache.gate.learn(q.namespace, entry_id, sim - 0.01, True)
    served = cache.lookup(q, near)
    assert served is not None and served.reason == "approved near miss"


def test_namespace_bound_serves_the_safest_candidates_within_the_budget() -> None:
    gate = AdaptiveGate(AdaptiveConfig(delta=0.02, explore_rate=0.0))  # bound "namespace", the default
    for i in range(2000):  # the namespace: about 1 % wrong at 0.97, 10 % at 0.90
        gate.learn(NS, 10_000 + i, 0.97, i % 100 != 0)
        gate.learn(NS, 20_000 + i, 0.90, i % 10 != 0)
    decisions = []
    for i in range(400):
        gate.seen(NS)
        decisions.append((gate.decide(NS, i, 0.97), gate.decide(NS, 5000 + i, 0.90)))
    late = decisions[200:]
    assert all(a == "serve" for a, _ in late)  # ~1 % error each: well within 2 % of the requests
    assert all(b == "explore" for _, b in late)  # ~10 % each: serving them too would pass the budget
