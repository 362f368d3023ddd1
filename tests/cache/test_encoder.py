"""Encoders: the contract, truncation, micro-batching, and the ONNX back end against the reference."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache import Encoder, EncoderError, HashingEncoder, MicroBatcher, default_encoder
from cache.encoder import MAX_CHARS


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(st.text(max_size=200), max_size=5))
def test_hashing_encoder_contract(texts: list[str]) -> None:
    enc = HashingEncoder(64)
    out = enc.encode(texts)
    assert isinstance(enc, Encoder)
    assert out.dtype == np.float32 and out.shape == (len(texts), 64)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(out, enc.encode(texts))


def test_single_str_is_refused_and_unknown_backend_named() -> None:
    with pytest.raises(TypeError):
        HashingEncoder().encode("oops")  # type: ignore[arg-type]
    with pytest.raises(EncoderError, match="unknown encoder back end"):
        default_encoder("tpu")


class Counting:
    name, dim = "counting", 64

    def __init__(self) -> None:
        self.calls = 0
        self.inner = HashingEncoder(64)
        self.lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            self.calls += 1
        return self.inner.encode(texts)


def test_micro_batcher_shares_forward_passes() -> None:
    enc = Counting()
    batcher = MicroBatcher(enc, max_batch=16, max_wait_s=0.005)
    texts = [f"question {i}" for i in range(40)]

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.encode_one(t) for t in texts))

    vectors = asyncio.run(main())
    assert enc.calls < len(texts) and enc.calls == batcher.batches
    np.testing.assert_array_equal(np.stack(vectors), HashingEncoder(64).encode(texts))
    again = asyncio.run(main())  # a second event loop works too
    np.testing.assert_array_equal(np.stack(again), np.stack(vectors))


def test_micro_batcher_propagates_errors() -> None:
    class Broken:
        name, dim = "broken", 4

        def encode(self, texts: Sequence[str]) -> np.ndarray:
            raise RuntimeError("model fell over")

    async def main() -> None:
        b = MicroBatcher(Broken())
        await asyncio.gather(b.encode_one("a"), b.encode_one("b"))

    with pytest.raises(RuntimeError, match="fell over"):
        asyncio.run(main())


# ------------------------------------------------------------------------------- the real model
def test_minilm_contract_and_window(minilm: Encoder) -> None:
    huge = "the quick brown fox jumps over the lazy dog " * 25_000  # ~1 MB
    out = minilm.encode(["", huge, "日本語のテキスト ✓ 🙂", huge[:MAX_CHARS]])
    assert out.shape == (4, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-4)
    assert float(out[1] @ out[3]) > 0.9999  # only the model's window counts
    assert minilm.name == "all-MiniLM-L6-v2"


def test_minilm_batches_equal_single_calls(minilm: Encoder) -> None:
    texts = ["short", "a somewhat longer question about the weather in Paris tomorrow", "x" * 500]
    batch = minilm.encode(texts)
    single = np.stack([minilm.encode([t])[0] for t in texts])
    assert np.min(np.sum(batch * single, axis=1)) > 0.9999


@pytest.mark.slow
def test_onnx_matches_sentence_transformers(minilm: Encoder) -> None:
    from cache import SentenceTransformerEncoder

    texts = ["How do I reverse a list?", "What's the capital of Peru?", "", "résumé naïve café " * 40]
    ref = SentenceTransformerEncoder().encode(texts)
    assert np.min(np.sum(minilm.encode(texts) * ref, axis=1)) >= 0.99
