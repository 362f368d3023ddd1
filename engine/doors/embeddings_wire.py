"""The OpenAI Embeddings request, its checks, which configured providers serve an embedding model, and
the answer's encoding (floats or base64 of little-endian float32, as OpenAI sends them)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Literal

import msgspec
import numpy as np

from cache.scope import Scope
from engine.doors._common import exact_scope
from engine.errors import RequestError
from models.schema import EmbeddingEntry, Route
from router.providers.embeddings import Embedder
from router.types import ThriftyOptions

MAX_INPUTS = 2048  # OpenAI's limit per request


class EmbeddingsRequest(msgspec.Struct, forbid_unknown_fields=True):
    input: str | list[Any]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    thrifty: ThriftyOptions | None = None


request_decoder = msgspec.json.Decoder(EmbeddingsRequest)
_json = msgspec.json.Encoder()


def inputs_of(value: str | list[Any]) -> list[str]:
    """The texts to embed; token arrays and empty strings are 400s that say so."""
    texts = [value] if isinstance(value, str) else value
    if not texts:
        raise RequestError("input: at least one input is required", param="input")
    if len(texts) > MAX_INPUTS:
        raise RequestError(f"input: at most {MAX_INPUTS} inputs per request, got {len(texts)}", param="input")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise RequestError(f"input[{i}]: token arrays are not supported through thrifty (the cache and "
                               "the cost are keyed on text); send the text", param="input")
        if not t:
            raise RequestError(f"input[{i}]: an input must not be empty", param="input")
    return list(texts)


def dimensions_of(entry: EmbeddingEntry, requested: int | None) -> int | None:
    if requested is None:
        return None
    if not entry.adjustable_dimensions:
        raise RequestError(f"dimensions: {entry.id} has a fixed length of {entry.dimensions}", param="dimensions")
    if not 1 <= requested <= entry.dimensions:
        raise RequestError(f"dimensions: must be between 1 and {entry.dimensions} for {entry.id}, got {requested}",
                           param="dimensions")
    return requested


class EmbeddingRoutes:
    """Embedding models by name, and for each the routes on configured providers that offer ``embed``."""

    def __init__(self, entries: tuple[EmbeddingEntry, ...], providers: Mapping[str, Any],
                 routes: Mapping[str, tuple[str, ...]]) -> None:
        self.by_name: dict[str, EmbeddingEntry] = {}
        for e in entries:
            self.by_name[e.id] = e
            self.by_name.update({a: e for a in e.aliases})
        embedders = {n: p for n, p in providers.items() if isinstance(p, Embedder)}
        self.providers = embedders
        # A provider told to serve every model ("*"), or a simulated one, serves the embedding models too.
        wildcard = [n for n, p in embedders.items()
                    if "*" in routes.get(n, ()) or getattr(p, "kind", "") == "simulated"]
        self.routes: dict[str, tuple[Route, ...]] = {}
        for e in entries:
            own = [r for r in e.routes if r.provider in embedders]
            extra = [Route(provider=n, model=e.id) for n in wildcard if all(r.provider != n for r in own)]
            if own or extra:
                self.routes[e.id] = (*extra, *own)

    def served(self) -> list[EmbeddingEntry]:
        return [e for e in self.by_name.values() if e.id in self.routes and self.by_name.get(e.id) is e]

    def resolve(self, name: str) -> tuple[EmbeddingEntry, tuple[Route, ...]]:
        entry = self.by_name.get(name)
        if entry is None:
            known = ", ".join(sorted(e.id for e in self.served())) or "none (no provider offers embeddings)"
            raise RequestError(f"model: {name!r} is not an embedding model; served embedding models: {known}",
                               param="model")
        routes = self.routes.get(entry.id)
        if not routes:
            raise RequestError(f"model: {entry.id} is not served by any configured provider that offers "
                               "embeddings (OpenAI-compatible or simulated)", param="model")
        return entry, routes


def scope_of(owner: str | None, namespace: str, model: str, dimensions: int | None, text: str) -> Scope:
    """One input's exact-only cache scope: the tenant's space, the model and the length, then the text."""
    return exact_scope(owner, namespace, ["embeddings", model, dimensions], text)


def encode_answer(vectors: list[np.ndarray], model: str, fmt: str, prompt_tokens: int) -> bytes:
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if fmt == "base64" else v.tolist()}
            for i, v in enumerate(vectors)]
    return _json.encode({"object": "list", "data": data, "model": model,
                         "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
