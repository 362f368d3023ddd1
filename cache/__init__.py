"""thrifty's semantic cache room: encoder, scoping, per-partition index, LMDB store, hit policy.

Importing ``cache`` loads no model and opens no file; encoders load on first use.
"""

from __future__ import annotations

from typing import Any

from cache.batcher import MicroBatcher
from cache.encoder import (
    ENCODERS,
    AutoEncoder,
    Encoder,
    HashingEncoder,
    OnnxEncoder,
    SentenceTransformerEncoder,
    default_encoder,
)
from cache.errors import (
    CacheDirError,
    CacheError,
    CacheFullError,
    CacheInputError,
    CorruptCacheError,
    EncoderError,
    EncoderMismatchError,
    SchemaVersionError,
)
from cache.index import IndexParams, IndexSet, PartitionIndex
from cache.modes import MODES, CacheMode, reads, writes
from cache.scope import IGNORED_FIELDS, PARTITION_FIELDS, Scope, namespace_problem, scope, space
from cache.semantic import CacheConfig, CacheStats, EntryMeta, Hit, SemanticCache, Verifier
from cache.store import EVICTION_POLICIES, SCHEMA_VERSION
from cache.transfer import export_jsonl, import_jsonl

_POLICY_NAMES = ("HitPolicy", "PolicyConfig", "Verdict", "default_policy")


def __getattr__(name: str) -> Any:
    # The hit policy may load lexicons; import it only when asked for.
    if name in _POLICY_NAMES:
        from cache import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'cache' has no attribute {name!r}")


__all__ = [
    "ENCODERS",
    "EVICTION_POLICIES",
    "IGNORED_FIELDS",
    "MODES",
    "PARTITION_FIELDS",
    "SCHEMA_VERSION",
    "AutoEncoder",
    "CacheConfig",
    "CacheDirError",
    "CacheError",
    "CacheFullError",
    "CacheInputError",
    "CacheMode",
    "CacheStats",
    "CorruptCacheError",
    "Encoder",
    "EncoderError",
    "EncoderMismatchError",
    "EntryMeta",
    "HashingEncoder",
    "Hit",
    "HitPolicy",
    "IndexParams",
    "IndexSet",
    "MicroBatcher",
    "OnnxEncoder",
    "PartitionIndex",
    "PolicyConfig",
    "SchemaVersionError",
    "Scope",
    "SemanticCache",
    "SentenceTransformerEncoder",
    "Verdict",
    "Verifier",
    "default_encoder",
    "default_policy",
    "export_jsonl",
    "import_jsonl",
    "namespace_problem",
    "reads",
    "scope",
    "space",
    "writes",
]
