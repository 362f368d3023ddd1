"""Scoping: a request -> (partition key, exact key, semantic text). A pure function of the request.

* **partition** — 16-byte blake2b of the canonical JSON of everything that must match for an answer to
  be reusable: the tenant, the namespace, every field in ``PARTITION_FIELDS`` and every message except the final user
  turn's *text* (system prompt, earlier turns, and the final turn's role, name and non-text parts such as
  images). Semantic search only ever looks inside one partition.
* **text** — the text of the final user turn: what the encoder embeds and the verifier compares.
* **exact_key** — blake2b of partition + text: the whole canonical request, for the exact-hit table.

If the last message is not a user turn (an assistant prefill, a tool result), the whole conversation is
in the partition, ``text`` is ``""`` and the request is *exact-only*: it can hit only byte-identical
requests, since there is no user question to compare semantically. An empty user turn is exact-only too.

**Tenancy.** A namespace is a sub-space of its tenant: ``scope(req, namespace="faq", tenant="acme")``
and ``tenant="globex"`` give different partitions, so no choice of namespace reaches another tenant's
entries. A namespace shared by several tenants (granted in config) is scoped with ``tenant=None``. The
stored label of an entry's space (``Scope.namespace``, what purge and export name) is
:func:`space` ``(tenant, namespace)``: ``"acme/faq"``, or ``"/faq"`` for a shared namespace.

``cache`` does not import ``router``: fields are read by name with ``getattr``. A test checks that every
field of ``router.types.ChatRequest`` is in exactly one of ``PARTITION_FIELDS`` / ``IGNORED_FIELDS``, so a
new request field cannot silently fall out of the key.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

PARTITION_FIELDS: tuple[str, ...] = (
    "messages",  # special: all but the final user turn's text (see module docstring)
    "model",  # "auto" is a route and partitions like any model name
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "verbosity",
    "moderation",  # the provider's moderation settings can change (or withhold) the answer
    "functions",  # deprecated tools: refused today, but an answer to them would depend on them
    "function_call",
)

IGNORED_FIELDS: tuple[tuple[str, str], ...] = (
    ("stream", "a hit is replayed as a stream when asked; the answer is the same"),
    ("stream_options", "only shapes the stream (usage chunk), not the answer"),
    ("store", "provider-side retention flag; does not change the answer"),
    ("metadata", "caller's bookkeeping tags; do not change the answer"),
    ("user", "end-user id for abuse tracking; tenancy comes from the caller's key, not the body"),
    ("safety_identifier", "end-user id for abuse tracking; does not change the answer"),
    ("prompt_cache_key", "provider prompt-cache routing hint; does not change the answer"),
    ("prompt_cache_retention", "how long the provider keeps its prompt cache; does not change the answer"),
    ("prompt_cache_options", "provider prompt-cache settings; do not change the answer"),
    ("service_tier", "latency/price tier; the same model answers"),
    ("thrifty", "thrifty's own controls; thrifty.namespace is passed to scope() as `namespace`"),
)

_SEMANTIC_FIELDS = tuple(f for f in PARTITION_FIELDS if f != "messages")
_canonical = msgspec.json.Encoder(order="deterministic")


MAX_NAMESPACE_CHARS = 128
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


def namespace_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a namespace, or None: 1-128 characters of ``A-Z a-z 0-9 . _ : -``,
    starting with a letter or digit (so it never contains the ``/`` of a space label)."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if len(name) > MAX_NAMESPACE_CHARS:
        return f"is {len(name)} characters long; the limit is {MAX_NAMESPACE_CHARS}"
    if not _NAMESPACE_RE.fullmatch(name):
        return "may contain only letters, digits and . _ : - (and must start with a letter or digit)"
    return None


def space(tenant: str | None, namespace: str) -> str:
    """The label of a cache space: ``"<tenant>/<namespace>"``; ``"/<namespace>"`` when shared."""
    return f"{tenant or ''}/{namespace}"


class Scope(msgspec.Struct, frozen=True):
    namespace: str  # the space label: space(tenant, namespace)
    partition: bytes  # 16-byte blake2b digest
    exact_key: bytes  # 16-byte blake2b digest
    text: str  # the final user turn's text; "" means exact-only

    @property
    def exact_only(self) -> bool:
        return not self.text


def _is_text_part(part: Any) -> bool:
    # msgspec tagged structs expose no ``type`` attribute; a text part is the one that carries ``text``.
    if isinstance(part, dict):
        return part.get("type") == "text"
    return isinstance(getattr(part, "text", None), str)


def _non_text(message: Any) -> Any:
    """The final user turn minus its text: role, name and any image/audio/file parts."""
    content = getattr(message, "content", None)
    parts = [] if isinstance(content, str) or content is None else [p for p in content if not _is_text_part(p)]
    return [getattr(message, "role", None), getattr(message, "name", None), parts]


def _text_of_parts(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] if isinstance(p, dict) else p.text for p in content if _is_text_part(p))


def scope(request: Any, namespace: str = "default", tenant: str | None = "default", variant: str | None = None) -> Scope:
    """Partition, exact key and semantic text of ``request`` (a ``ChatRequest`` or anything shaped like it)
    in ``tenant``'s ``namespace`` (``tenant=None``: a namespace shared between tenants). ``variant``: what else
    changes the answer and is not in the request (an experiment arm's routing policy or provider route): a
    partition of its own inside the same space (same label, so purge and export still name it)."""
    messages = list(getattr(request, "messages", None) or ())
    last = messages[-1] if messages else None
    if last is not None and getattr(last, "role", None) == "user":
        text = _text_of_parts(getattr(last, "content", None))
        history: list[Any] = [*messages[:-1], _non_text(last)]
    else:
        text, history = "", messages
    # The tenant is its own element (not part of a joined string): no tenant/namespace pair can be
    # spelled to collide with another's. A shared space's tenant is null, which no tenant name encodes to.
    payload = [tenant, namespace, [getattr(request, f, None) for f in _SEMANTIC_FIELDS], history]
    if variant is not None:  # appended only when set: every key made without a variant stays as it was
        payload.append(["variant", variant])
    try:
        canonical = _canonical.encode(payload)
    except (TypeError, msgspec.EncodeError) as e:
        raise TypeError(f"request has a field that cannot be canonicalised for the cache key: {e}") from e
    partition = hashlib.blake2b(canonical, digest_size=16).digest()
    exact = hashlib.blake2b(partition, digest_size=16)
    exact.update(text.encode("utf-8", "surrogatepass"))
    return Scope(space(tenant, namespace), partition, exact.digest(), text)
