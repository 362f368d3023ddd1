"""Embeddings on the wire: OpenAI's ``/embeddings`` call (every OpenAI-compatible provider) and the
deterministic, labelled vectors of the simulated provider and the fake upstream.

A provider that offers embeddings has an ``embed(inputs, model, dimensions, deadline)`` method returning an
:class:`Embedded`; the others (Anthropic, Cortex) have none, and the embeddings door never routes to them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec
import numpy as np

if TYPE_CHECKING:
    from router.deadline import Deadline
    from router.providers.base import HTTPProvider


class EmbeddingDatum(msgspec.Struct):
    index: int
    embedding: list[float]
    object: str = "embedding"


class EmbeddingUsage(msgspec.Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(msgspec.Struct):
    """OpenAI's embeddings answer (asked for as floats: every compatible server speaks that)."""

    data: list[EmbeddingDatum]
    model: str = ""
    usage: EmbeddingUsage | None = None
    object: str = "list"


class Embedded(msgspec.Struct):
    """One upstream call's vectors (in input order), as float32, and what the upstream says it used."""

    vectors: list[np.ndarray]
    prompt_tokens: int
    model: str


@runtime_checkable
class Embedder(Protocol):
    name: str

    async def embed(self, inputs: list[str], model: str, dimensions: int | None, deadline: Deadline, *,
                    native: int = 0, user: str | None = None) -> Embedded:
        """``native``: the model's own vector length, for providers that make vectors up (simulated);
        ``user``: the caller's end-user id, passed on where the wire has it."""
        ...


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(EmbeddingResponse).decode


def _checked(body: bytes, count: int) -> EmbeddingResponse:
    response = _decode(body)
    if sorted(d.index for d in response.data) != list(range(count)):
        raise ValueError(f"expected {count} embeddings indexed 0..{count - 1}, got {len(response.data)}")
    return response


async def embed_http(provider: HTTPProvider, url: Any, inputs: list[str], model: str, dimensions: int | None,
                     deadline: Deadline, user: str | None = None) -> Embedded:
    """One POST to an OpenAI-compatible ``/embeddings``; errors mapped like chat calls (base.post)."""
    body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "float"}
    if dimensions is not None:
        body["dimensions"] = dimensions
    if user is not None:
        body["user"] = user
    response = await provider.post(_encode(body), deadline, url=url)
    decoded: EmbeddingResponse = await provider.read_json(response, lambda b: _checked(b, len(inputs)))
    ordered = sorted(decoded.data, key=lambda d: d.index)
    usage = decoded.usage
    return Embedded(vectors=[np.asarray(d.embedding, dtype=np.float32) for d in ordered],
                    prompt_tokens=usage.prompt_tokens if usage else 0, model=decoded.model or model)


def labelled_vector(model: str, text: str, dimensions: int) -> np.ndarray:
    """A deterministic unit vector for ``text`` (seeded by model and text): the same input always gives
    the same vector, different inputs almost surely different ones. Not a semantic embedding."""
    seed = int.from_bytes(hashlib.blake2b(f"{model}\n{text}".encode(), digest_size=8).digest(), "big")
    v = np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)
    v /= np.linalg.norm(v) or 1.0
    return v
