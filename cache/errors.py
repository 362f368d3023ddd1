"""The cache room's exceptions (``cache`` cannot import ``engine``; the engine maps these to its own tree).

::

    CacheError                      anything the cache refuses or cannot do
    ├── CacheDirError               the cache directory cannot be created, opened or locked
    ├── CorruptCacheError           data.mdb is not an LMDB file, or an LMDB that thrifty did not write
    ├── SchemaVersionError          written by another schema version of thrifty's store
    ├── EncoderMismatchError        written (or exported) with another encoder name or dimension
    ├── CacheFullError              the LMDB map is full even after growing to its maximum and evicting
    ├── EncoderError                the encoder cannot be loaded or run
    └── CacheInputError             a bad argument: wrong vector shape, unknown policy, bad import line

Lower-level errors (``lmdb.Error``, faiss ``RuntimeError``, ``OSError``) are translated at the boundary
with ``raise ... from`` so callers only catch ``CacheError``.
"""

from __future__ import annotations


class CacheError(Exception):
    """Base class of every error raised by ``cache``."""


class CacheDirError(CacheError):
    """The cache directory cannot be created, opened or locked."""


class CorruptCacheError(CacheError):
    """The directory holds a file that is not a thrifty cache (random bytes, a foreign LMDB)."""


class SchemaVersionError(CacheError):
    """The cache was written by another version of the store's schema."""


class EncoderMismatchError(CacheError):
    """The cache (or an export) was written with another encoder name or dimension."""


class CacheFullError(CacheError):
    """The LMDB map is full even after growing to ``max_map_size`` and evicting."""


class EncoderError(CacheError):
    """The embedding model cannot be loaded or run."""


class CacheInputError(CacheError, ValueError):
    """A bad argument: wrong vector shape or dtype, unknown policy name, malformed import line."""
