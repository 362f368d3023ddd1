"""Stored responses, for the Responses API's ``previous_response_id``.

A stored response is the conversation up to and including its answer (thrifty's ``Message`` list, without
the request's ``instructions``, which OpenAI does not carry over either). It lives in the engine's cache
store as an exact-only entry keyed by the tenant of the key that made it and the response id, so every
worker reads it, and a tenant can never read another's: the tenant is part of the key, never a namespace
a request can name. Entries follow the cache's life (TTL of 30 days, eviction, purge); a lost one is a 400
that says so. With the cache disabled nothing is stored and ``previous_response_id`` is a 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from engine.doors._common import exact_scope
from engine.errors import RequestError
from router.types import Message

if TYPE_CHECKING:
    from engine.engine import Engine

TTL_S = 30 * 86400.0  # OpenAI keeps stored responses 30 days
_NAMESPACE = "responses"
_KIND = ["stored-response"]
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[Message]).decode


class ResponseStore:
    def __init__(self, engine: Engine) -> None:
        self.e = engine

    @property
    def enabled(self) -> bool:
        return bool(self.e.settings.raw.cache.enabled)

    def load(self, tenant: str, response_id: str) -> list[Message]:
        if not self.enabled:
            raise RequestError("previous_response_id: this gateway stores no responses (cache.enabled is false); "
                               "send the earlier turns as input items", param="previous_response_id")
        scope = exact_scope(tenant, _NAMESPACE, _KIND, response_id)
        hit = self.e.pending_exact(scope) or self.e.cache.lookup_exact(scope)  # in-flight first
        if hit is None:
            raise RequestError(f"previous_response_id: no stored response {response_id!r} for this key (never "
                               "stored, made with store=false, expired or evicted)", param="previous_response_id")
        return _decode(hit.response)

    def save(self, tenant: str, response_id: str, conversation: list[Message]) -> None:
        """Queued on the engine's cache writer; readable at once in this process (``pending_exact``)."""
        scope = exact_scope(tenant, _NAMESPACE, _KIND, response_id)
        self.e.cache_insert(scope, None, _encode(conversation), model="stored-response",  # type: ignore[arg-type]
                            cost_usd=0.0, ttl=TTL_S, tokens_in=0, tokens_out=0)
