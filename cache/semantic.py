"""``SemanticCache``: the cache room's public facade (store + per-partition index + hit policy).

Lookups are read-only against LMDB and the in-memory index; hit counts are buffered in memory and
written by ``sweep()`` (off the hot path), together with TTL expiry, size-bounded eviction, index
snapshots and log trimming. Another process's writes reach this process's index through the store's
change log, checked at most every ``refresh_interval_s`` on lookup.

Threads: one cache is shared by the lookup thread (the engine's event loop), a writer thread (inserts)
and the sweeper. Every LMDB transaction is opened and closed inside one call on one thread; index
rebuilds run on the ``IndexSet``'s own thread and are swapped in under a short lock; a lookup never
waits for index sync held by another thread (it serves the index as it is and catches up next time).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import msgspec
import numpy as np

from cache.errors import CacheFullError, CacheInputError
from cache.index import IndexParams, IndexSet, PartitionIndex
from cache.scope import Scope
from cache.store import EVICTION_POLICIES, Entry, LogOp, Snapshot, Store

log = logging.getLogger(__name__)


class VerdictLike(Protocol):
    @property
    def accept(self) -> bool: ...

    @property
    def reason(self) -> str: ...


class Verifier(Protocol):
    """What the facade needs of a hit policy (``cache.policy.HitPolicy`` is the real one)."""

    first_bar: float  # candidates below this cosine are never considered
    threshold: float
    top_k: int

    def verify(
        self, query: str, candidate: str, similarity: float, threshold: float | None = None
    ) -> VerdictLike: ...


class CacheConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    map_size: int = 64 << 20  # initial LMDB map; doubles on demand up to max_map_size
    max_map_size: int = 16 << 30
    max_entries: int | None = None
    max_bytes: int | None = None  # sum of entry sizes (payload + text + vector)
    eviction: str = "lru"  # a key of cache.store.EVICTION_POLICIES
    evict_fraction: float = 0.1  # a breached bound evicts down to (1 - fraction) x bound
    evict_batch: int = 256  # most entries one insert evicts inline; the sweeper does the rest
    default_ttl_s: float | None = None
    durable: bool = True  # fsync each commit; False survives SIGKILL but not power loss
    refresh_interval_s: float = 0.1  # how often a lookup checks for other processes' writes
    snapshot_min_changes: int = 1000  # sweep() snapshots the index after this many changes
    index: IndexParams = IndexParams()

    def __post_init__(self) -> None:
        if self.eviction not in EVICTION_POLICIES:
            raise CacheInputError(
                f"unknown eviction policy {self.eviction!r}; choose one of {sorted(EVICTION_POLICIES)}"
            )
        if not 0 < self.evict_fraction <= 1:
            raise CacheInputError("evict_fraction must be in (0, 1]")
        if self.evict_batch < 1:
            raise CacheInputError("evict_batch must be at least 1")


# The longest TTL an entry may have (ten years): nan never expires and breaks export, inf and 1e300 overflow
# ``now + ttl``; "keep for ever" is ``ttl None``, never a huge number.
MAX_TTL_S = 10 * 365 * 86400.0


class EntryMeta(msgspec.Struct, frozen=True):
    model: str = ""
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    ttl_s: float | None = None  # None: the config's default_ttl_s


class Hit(msgspec.Struct, frozen=True):
    id: int
    response: bytes
    similarity: float
    text: str  # the cached request's semantic text
    reason: str  # "exact" or the verifier's verdict reason
    model: str
    cost_usd: float
    tokens_in: int
    tokens_out: int
    score: float | None = None  # the hit policy's Verdict.score (None for exact hits)
    explore: bool = False  # the adaptive gate wants a fresh answer compared with this one (not served)
    exact_key: bytes = b""  # the entry's exact key: its name on every replica (ids are per replica)


class CacheStats(msgspec.Struct):
    entries: int
    bytes: int
    partitions: int
    indexed: int
    exact_hits: int
    semantic_hits: int
    misses: int
    rejected: int  # candidates above the first bar that the verifier refused
    inserts: int
    evicted: int
    expired: int
    seq: int
    explored: int = 0  # candidates the adaptive gate sent to a fresh answer and a comparison


_COUNTERS = ("exact_hits", "semantic_hits", "misses", "rejected", "inserts", "evicted", "expired", "explored")


class SemanticCache:
    def __init__(self, store: Store, config: CacheConfig, policy: Verifier):
        self.store, self.config, self.policy = store, config, policy
        self.dim = store.dim
        self._index = IndexSet(store.dim, config.index)
        self._applied = 0  # last change-log seq reflected in the index
        self._last_check = 0.0
        self._sync = threading.RLock()  # index <-> change-log sync
        self._mu = threading.Lock()  # hit buffer and counters (touched by every thread)
        self._evicting = threading.Lock()
        self._sweeping = threading.Lock()
        self._evict_owed = False  # an insert stopped evicting at evict_batch: the sweeper goes on
        self._reload = False  # a lookup found the log trimmed past us: the next forced catch-up reloads
        self._hits: dict[int, tuple[int, float]] = {}
        self._snap_seq = 0
        self._n = dict.fromkeys(_COUNTERS, 0)
        self._closed = False
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        # Told of every insert, delete and purge made through this facade (engine/state/replication.py
        # sends them to the other replicas); None: nobody listens, nothing extra is done.
        self.listener: Any = None
        # cache.adaptive.AdaptiveGate when adaptive thresholds or near-miss approvals are on (set by the owner);
        # gate_adaptive: the gate decides every candidate above its floor, else it only adds approved near misses.
        self.gate: Any = None
        self.gate_adaptive = False
        self._load_index()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        encoder_name: str,
        dim: int,
        config: CacheConfig | None = None,
        policy: Verifier | None = None,
    ) -> SemanticCache:
        config = config or CacheConfig()
        if policy is None:
            from cache.policy import default_policy

            verifier: Verifier = default_policy()
        else:
            verifier = policy
        store = Store(path, encoder_name, dim, config.map_size, config.max_map_size, config.durable, config.eviction)
        try:
            return cls(store, config, verifier)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._stop.set()
            self._sweeper.join()
        self._index.close()
        self.flush_hits()
        self.store.close()

    def __enter__(self) -> SemanticCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ lookups
    def lookup_exact(self, scope: Scope) -> Hit | None:
        """The entry stored for this exact request, if any and not expired. No embedding needed."""
        found = self.store.get_exact(scope.exact_key)
        if found is None or found[1].expired(time.time()):
            return None
        self._count("exact_hits")
        return self._hit(found[0], found[1], 1.0, "exact")

    def lookup(self, scope: Scope, vector: np.ndarray, threshold: float | None = None,
               timing: dict[str, float] | None = None, probe: dict[str, Any] | None = None) -> Hit | None:
        """The best verified neighbour of ``vector`` in ``scope``'s partition only, or None. When ``timing``
        is given and a verifier ran, ``timing["verify_ms"]`` receives the verifier's time (all its calls).
        ``probe`` (``{"margin": m}``): on a miss, ``probe["near"] = (entry id, score, response)`` names the best
        candidate refused only for scoring less than ``m`` below the threshold (a near miss to judge later)."""
        if scope.exact_only:
            return None
        self.catch_up()
        policy = self.policy
        if self.gate is not None or probe is not None:
            return self._lookup_gated(scope, vector, threshold, probe)
        ids, scores = self._index.search(scope.partition, vector, policy.top_k)
        bar = policy.first_bar if threshold is None else min(policy.first_bar, threshold)
        if not len(scores) or scores[0] < bar:
            self._count("misses")
            return None
        now = time.time()
        with self.store.read() as txn:
            live = self._live(ids.tolist(), scores.tolist(), bar, txn, now)
            if getattr(policy, "batched", False):
                # A learned stage judges all live candidates in one call.
                found = list(live)
                verify_many = policy.verify_many  # type: ignore[attr-defined]  # "batched" promises it
                t0 = time.perf_counter_ns() if timing is not None else 0
                verdicts = verify_many(scope.text, [(e.text, sc) for _, e, sc in found], threshold)
                if timing is not None and found:
                    timing["verify_ms"] = (time.perf_counter_ns() - t0) / 1e6
                return self._first_hit(
                    (eid, e, sc, v) for (eid, e, sc), v in zip(found, verdicts, strict=True)
                )
            # One at a time: a candidate is read and verified only if the better ones were refused.
            if timing is not None:
                return self._first_hit(_timed(live, policy.verify, scope.text, threshold, timing))
            return self._first_hit(
                (eid, e, sc, policy.verify(scope.text, e.text, sc, threshold)) for eid, e, sc in live
            )

    def candidates(self, scope: Scope, vector: np.ndarray, k: int | None = None) -> list[tuple[int, Entry, float]]:
        """The ``k`` (default: the policy's top_k) nearest unexpired entries of ``scope``'s partition with
        their cosine similarity, best first: what :meth:`lookup` would judge, without judging them or
        counting anything (the dashboard's "what would this prompt hit?")."""
        if scope.exact_only:
            return []
        self.catch_up()
        ids, scores = self._index.search(scope.partition, vector, k or self.policy.top_k)
        with self.store.read() as txn:
            return list(self._live(ids.tolist(), scores.tolist(), -1.0, txn, time.time()))

    def _lookup_gated(self, scope: Scope, vector: np.ndarray, threshold: float | None,
                      probe: dict[str, Any] | None) -> Hit | None:
        """``lookup`` with the adaptive gate and/or a near-miss probe (one candidate verified at a time)."""
        policy, gate = self.policy, self.gate
        static = policy.threshold if threshold is None else threshold
        adaptive = gate is not None and self.gate_adaptive and threshold is None
        verify_at = min(static, gate.floor) if adaptive else threshold  # the gate decides above its floor
        if adaptive:
            gate.seen(scope.namespace)
        ids, scores = self._index.search(scope.partition, vector, policy.top_k)
        low = static - float(probe.get("margin", 0.0)) if probe is not None else static
        if gate is not None:
            low = min(low, gate.floor)
        bar = min(policy.first_bar, low)
        if not len(scores) or scores[0] < bar:
            self._count("misses")
            return None
        now = time.time()
        with self.store.read() as txn:
            for entry_id, entry, sc in self._live(ids.tolist(), scores.tolist(), bar, txn, now):
                verdict = policy.verify(scope.text, entry.text, sc, verify_at)
                score, reason = float(getattr(verdict, "score", sc)), verdict.reason
                if adaptive and verdict.accept and reason != "identical":
                    decision = gate.decide(scope.namespace, entry_id, score)
                    if decision == "explore":
                        self._count("explored")
                        return Hit(entry_id, entry.response, sc, entry.text, "explore", entry.model, entry.cost_usd,
                                   entry.tokens_in, entry.tokens_out, score, True, entry.exact_key)
                    if decision == "refuse":
                        self._count("rejected")
                        continue
                elif not verdict.accept:
                    below = reason.startswith(("below", "verifier"))  # refused on the score, not by a guard
                    if below and gate is not None and gate.approved(scope.namespace, entry_id, score):
                        reason = "approved near miss"
                    else:
                        if below and probe is not None and "near" not in probe and score >= low:
                            probe["near"] = (entry_id, score, entry.response)
                        self._count("rejected")
                        continue
                self._count("semantic_hits")
                return self._hit(entry_id, entry, sc, reason, score)
        self._count("misses")
        return None

    def _live(
        self, ids: list[int], scores: list[float], bar: float, txn: Any, now: float
    ) -> Iterator[tuple[int, Entry, float]]:
        """The unexpired candidates at or above ``bar``, best first, each read when it is reached."""
        for entry_id, score in zip(ids, scores, strict=True):
            if score < bar:
                return
            entry = self.store.get(entry_id, txn)
            if entry is not None and not entry.expired(now):
                yield entry_id, entry, score

    def _first_hit(self, judged: Iterable[tuple[int, Entry, float, Any]]) -> Hit | None:
        """The first accepted candidate as a Hit; every refusal and the final miss are counted."""
        for entry_id, entry, score, verdict in judged:
            if verdict.accept:
                self._count("semantic_hits")
                return self._hit(entry_id, entry, score, verdict.reason, float(getattr(verdict, "score", score)))
            self._count("rejected")
        self._count("misses")
        return None

    def _count(self, name: str, n: int = 1) -> None:
        with self._mu:
            self._n[name] += n

    def _hit(self, entry_id: int, e: Entry, similarity: float, reason: str, score: float | None = None) -> Hit:
        with self._mu:
            count, _ = self._hits.get(entry_id, (0, 0.0))
            self._hits[entry_id] = (count + 1, time.time())
        return Hit(entry_id, e.response, similarity, e.text, reason, e.model, e.cost_usd, e.tokens_in, e.tokens_out,
                   score, exact_key=e.exact_key)

    # ------------------------------------------------------------------------------------ writes
    def insert(self, scope: Scope, vector: np.ndarray | None, response: bytes, meta: EntryMeta | None = None) -> int:
        """Store ``response`` for ``scope``; ``vector`` may be None for exact-only scopes. The entry id."""
        entry, vec = self._entry(scope, vector, response, meta)
        entry_id = self.store.insert(entry, vec, on_full=self._evict_for_space)
        if self.listener is not None:
            self.listener.inserted([(entry, vec)])
        self._count("inserts")
        self.catch_up(force=True)
        self._enforce_bounds(limit=self.config.evict_batch)  # bounded: the sweeper finishes the job
        return entry_id

    def insert_many(
        self, items: Sequence[tuple[Scope, np.ndarray | None, bytes] | tuple[Scope, np.ndarray | None, bytes, EntryMeta]]
    ) -> list[int]:
        """Store many entries in one write transaction (imports, warm-up, benchmarks); their ids.
        Every item is checked before anything is written, so a bad one stores none."""
        built = [self._entry(*item) for item in items]
        ids = self.store.insert_many(built, on_full=self._evict_for_space)
        if self.listener is not None:
            self.listener.inserted(built)
        self._count("inserts", len(ids))
        self.catch_up(force=True)
        self._enforce_bounds(limit=self.config.evict_batch)
        return ids

    def _entry(
        self, scope: Scope, vector: np.ndarray | None, response: bytes, meta: EntryMeta | None = None
    ) -> tuple[Entry, np.ndarray | None]:
        meta = meta or EntryMeta()
        vec = None if scope.exact_only or vector is None else self._checked(vector)
        now = time.time()
        ttl = meta.ttl_s if meta.ttl_s is not None else self.config.default_ttl_s
        if ttl is not None and not 0 < ttl <= MAX_TTL_S:  # also refuses nan and inf
            raise CacheInputError(f"ttl must be a finite number of seconds in (0, {MAX_TTL_S:.0f}], got {ttl}")
        size = len(response) + len(scope.text.encode("utf-8", "surrogatepass")) + 4 * self.dim + 64
        if size > self.config.max_map_size // 8:  # would evict most of the cache and maybe still not fit
            raise CacheFullError(
                f"entry of {size} bytes is larger than 1/8 of max_map_size={self.config.max_map_size}; not stored"
            )
        entry = Entry(
            scope.partition, scope.exact_key, scope.namespace, scope.text, bytes(response), now,
            now + ttl if ttl else 0.0, 0, 0.0, meta.model, meta.cost_usd, meta.tokens_in, meta.tokens_out, size,
        )
        return entry, vec

    def delete(self, entry_id: int) -> bool:
        gone = self.store.get(entry_id) if self.listener is not None else None
        removed = self.store.delete([entry_id])
        if removed and gone is not None:
            self.listener.deleted([gone])
        self.catch_up(force=True)
        return bool(removed)

    def purge(self, namespace: str) -> int:
        """Delete every entry of ``namespace``; the number deleted."""
        ids = self.store.namespace_ids(namespace)
        removed = sum(self.store.delete(ids[i : i + 5000]) for i in range(0, len(ids), 5000))
        if self.listener is not None:
            self.listener.purged(namespace)
        self.catch_up(force=True)
        return removed

    def apply_replicated(self, adds: Sequence[tuple[Entry, np.ndarray | None]] = (),
                         deletes: Sequence[tuple[bytes, float]] = (), purges: Sequence[str] = ()) -> None:
        """Another replica's changes (engine/state/replication.py), applied without telling ``listener``:
        purges by namespace, deletes by exact key (only an entry created no later than the one deleted
        there), then entries as they were stored there (an entry replaces one with its exact key)."""
        for namespace in purges:
            ids = self.store.namespace_ids(namespace)
            for i in range(0, len(ids), 5000):
                self.store.delete(ids[i : i + 5000])
        doomed = [found[0] for key, created in deletes
                  if (found := self.store.get_exact(key)) is not None and found[1].created <= created]
        self.store.delete(doomed)
        if adds:
            self.store.insert_many(list(adds), on_full=self._evict_for_space)
            self._count("inserts", len(adds))
        self.catch_up(force=True)
        if adds:
            self._enforce_bounds(limit=self.config.evict_batch)

    def _checked(self, vector: np.ndarray) -> np.ndarray:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise CacheInputError(f"vector has dimension {v.shape[0]}, the cache holds {self.dim}")
        norm = float(np.linalg.norm(v))
        if not np.isfinite(norm) or norm == 0.0:
            raise CacheInputError("vector must be finite and non-zero")
        return v if abs(norm - 1.0) < 1e-3 else v / norm

    # ------------------------------------------------------------------------------------ housekeeping
    def start_sweeper(self, interval_s: float = 5.0) -> None:
        """Run ``sweep()`` every ``interval_s`` in a daemon thread until ``close()``."""
        if self._sweeper is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.sweep()
                except Exception:  # upkeep must never kill the thread; the next round retries
                    log.exception("cache sweep failed")

        self._sweeper = threading.Thread(target=loop, name="thrifty-cache-sweeper", daemon=True)
        self._sweeper.start()

    def sweep(self, now: float | None = None) -> dict[str, int]:
        """Off-hot-path upkeep: expire, evict to bounds, flush hit counts, snapshot, trim the log."""
        now = time.time() if now is None else now
        with self._sweeping:
            expired = 0
            while ids := self.store.expired_ids(now):
                expired += self.store.delete(ids)
            self._count("expired", expired)
            self.catch_up(force=True)
            self.flush_hits()
            evicted = self._enforce_bounds()
            if self._applied - self._snap_seq >= self.config.snapshot_min_changes:
                self.snapshot()
        return {"expired": expired, "evicted": evicted}

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until background index rebuilds are done (benchmarks, tests); False on timeout."""
        return self._index.wait_idle(timeout)

    def flush_hits(self) -> None:
        with self._mu:
            hits, self._hits = self._hits, {}
        self.store.update_hits(hits)

    def snapshot(self) -> None:
        """Write the whole index (vectors + HNSW graphs) so a restart needs no rebuild, then trim the log."""
        with self._sync:
            parts = []
            for partition, index in self._index.items():
                ids, vecs, blob = index.state()
                if len(ids):
                    parts.append((partition, ids.tobytes(), vecs.tobytes(), blob))
            snap = Snapshot(self.store.cache_id, self._applied, self.store.encoder_name, self.dim, parts)
        self.store.write_snapshot(snap)
        self._snap_seq = snap.seq
        # Keep some log behind the snapshot so slightly lagging processes can still catch up incrementally.
        self.store.trim_log(snap.seq - 50_000)

    def _enforce_bounds(self, limit: int | None = None) -> int:
        """A breached bound evicts down to (1 - evict_fraction) x bound; an insert does at most ``limit``
        of it and leaves the rest owed to the next sweep."""
        count, size = self.store.counts()
        cfg, keep = self.config, 1 - self.config.evict_fraction
        over_n = cfg.max_entries is not None and count > cfg.max_entries
        over_b = cfg.max_bytes is not None and size > cfg.max_bytes
        if not (over_n or over_b or (limit is None and self._evict_owed)):  # owed work is the sweeper's
            return 0
        target_n = int(cfg.max_entries * keep) if cfg.max_entries is not None else count
        target_b = int(cfg.max_bytes * keep) if cfg.max_bytes is not None else size

        def done(n: int, b: int) -> bool:
            return n <= target_n and b <= target_b

        evicted = self._evict(done, limit)
        self._evict_owed = not done(*self.store.counts())
        return evicted

    def _evict_for_space(self) -> bool:
        count, _ = self.store.counts()
        target = int(count * (1 - self.config.evict_fraction))
        return self._evict(lambda n, b: n <= target) > 0

    def _evict(self, done: Callable[[int, int], bool], limit: int | None = None) -> int:
        """Delete entries in the policy's order (a walk of the store's ``evict`` table, no scan) until
        ``done(count, bytes)`` or ``limit`` entries are gone."""
        with self._evicting:
            self.flush_hits()  # lru/lfu order must see the buffered hits
            budget = limit if limit is not None else 1 << 62
            evicted = 0
            count, size = self.store.counts()
            while budget > 0 and not done(count, size):
                victims = []
                for key, esize in self.store.eviction_order(min(budget, 5000)):
                    if done(count, size):
                        break
                    victims.append(key)
                    count, size = count - 1, size - esize
                if not victims:
                    break
                evicted += self.store.evict(victims)
                budget -= len(victims)
                count, size = self.store.counts()
        self._count("evicted", evicted)
        self.catch_up(force=True)
        return evicted

    # ------------------------------------------------------------------------------------ index sync
    def catch_up(self, force: bool = False) -> None:
        """Bring the in-memory index up to the store's change log (other processes' writes included).

        Unforced (a lookup): at most every ``refresh_interval_s``, skipped when another thread is syncing,
        and never a full reload (that is left to the next forced call: an insert or the sweeper)."""
        now = time.monotonic()
        if not force and now - self._last_check < self.config.refresh_interval_s:
            return
        self._last_check = now
        if not self._sync.acquire(blocking=force):
            return
        try:
            if self.store.seq() == self._applied and not self._reload:
                return
            ops, last, complete = self.store.log_since(self._applied)
            if not complete or self._reload:
                self._reload = not force
                if force:
                    self._load_index(use_snapshot=False)
                return
            self._apply(ops)
            self._applied = last
        finally:
            self._sync.release()

    def _apply(self, ops: list[LogOp]) -> None:
        final: dict[int, LogOp] = {}
        for op in ops:  # only an id's last operation matters
            final[op.id] = op
        dels: dict[bytes, list[int]] = {}
        adds: list[LogOp] = []
        for op in final.values():
            if op.op == "del":
                dels.setdefault(op.partition, []).append(op.id)
            else:
                adds.append(op)
        for partition, ids in dels.items():
            self._index.remove(partition, ids)
        found, vecs = self.store.vectors_of([op.id for op in adds])
        part_of = {op.id: op.partition for op in adds}
        groups: dict[bytes, list[int]] = {}
        for row, entry_id in enumerate(found):
            groups.setdefault(part_of[entry_id], []).append(row)
        for partition, rows in groups.items():
            self._index.partition(partition).add(np.asarray(found)[rows], vecs[rows])

    def _load_index(self, use_snapshot: bool = True) -> None:
        with self._sync:
            snap = self.store.read_snapshot() if use_snapshot else None
            if snap is not None and snap.seq <= self.store.seq():
                ops, last, complete = self.store.log_since(snap.seq)
                if complete:
                    self._index.replace({
                        partition: PartitionIndex.restore(
                            self.dim, np.frombuffer(id_bytes, np.int64),
                            np.frombuffer(vec_bytes, np.float32).reshape(-1, self.dim), blob, self.config.index,
                            self._index.schedule,
                        )
                        for partition, id_bytes, vec_bytes, blob in snap.partitions
                    })
                    self._snap_seq = self._applied = snap.seq
                    self._apply(ops)
                    self._applied = last
                    return
            seq, parts = self.store.load_all()
            self._index.replace({
                partition: PartitionIndex.restore(self.dim, ids, vecs, None, self.config.index, self._index.schedule)
                for partition, (ids, vecs) in parts.items()
            })
            self._applied = seq

    # ------------------------------------------------------------------------------------ stats
    def stats(self) -> CacheStats:
        count, size = self.store.counts()
        parts = sum(1 for _, p in self._index.items() if len(p))
        with self._mu:
            counters = dict(self._n)
        return CacheStats(count, size, parts, len(self._index), seq=self._applied, **counters)


def _timed(live: Iterable[tuple[int, Entry, float]], verify: Callable[..., Any], text: str,
           threshold: float | None, timing: dict[str, float]) -> Iterator[tuple[int, Entry, float, Any]]:
    """``live`` judged by ``verify``, the verifier's time so far in ``timing["verify_ms"]`` after each call
    (kept up to date, as the caller stops at the first accepted candidate)."""
    spent = 0
    for entry_id, entry, score in live:
        t0 = time.perf_counter_ns()
        verdict = verify(text, entry.text, score, threshold)
        spent += time.perf_counter_ns() - t0
        timing["verify_ms"] = spent / 1e6
        yield entry_id, entry, score, verdict
