"""The catalog of models: the shipped data file, its validation, lookups, filters and user overrides.

The data file (``models/catalog.json``) decodes straight into the schema's frozen Structs, so the file
format and the runtime records cannot drift apart. A user's overrides decode into the same Structs
(unknown keys are errors that name the key and the source) and replace or add whole entries by id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from typing import Any, NamedTuple

import msgspec

from models.errors import CatalogError, UnknownModelError
from models.schema import TASKS, Capabilities, EmbeddingEntry, ModelEntry


class CatalogFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    models: tuple[ModelEntry, ...]
    embeddings: tuple[EmbeddingEntry, ...] = ()  # read by embedding_models(), not by Catalog
    schema: int = 1
    as_of: str = ""


class Overrides(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``models`` section of a user's config: entries that replace (same id) or extend the catalog."""

    models: tuple[ModelEntry, ...] = ()


_file_decoder = msgspec.json.Decoder(CatalogFile)
# Snapshot suffixes providers append to a model's id, as data: dated (gpt-4o-2024-08-06,
# claude-3-5-sonnet-20241022) and "-latest". Stripped only when the name is not itself in the catalog.
SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


class Resolved(NamedTuple):
    """A model name resolved: the entry, and the provider its ``provider/`` prefix named (or None)."""

    entry: ModelEntry
    provider: str | None
_CAPABILITIES = frozenset(f.name for f in msgspec.structs.fields(Capabilities))


def validate_entry(entry: ModelEntry, source: str = "catalog") -> None:
    """Raise ``CatalogError`` naming the entry and the field when an entry is inconsistent."""
    where = f"{source}: model {entry.id!r}"
    if not entry.id:
        raise CatalogError(f"{source}: a model has an empty id")
    prices = [("price.input", entry.price.input), ("price.output", entry.price.output)]
    if entry.price.cached_input is not None:
        prices.append(("price.cached_input", entry.price.cached_input))
    for route in entry.routes:
        if route.price is not None:
            prices += [(f"routes[{route.provider}].price.input", route.price.input),
                       (f"routes[{route.provider}].price.output", route.price.output)]
    for name, value in prices:
        if not value >= 0:  # also rejects NaN
            raise CatalogError(f"{where}: {name} must be >= 0, got {value}")
    if entry.max_output <= 0 or entry.context_window <= 0:
        raise CatalogError(f"{where}: context_window and max_output must be positive")
    if entry.context_window < entry.max_output:
        raise CatalogError(
            f"{where}: context_window ({entry.context_window}) is smaller than max_output ({entry.max_output})"
        )
    if not entry.routes:
        raise CatalogError(f"{where}: routes is empty (a model nobody serves cannot be routed to)")
    for key, value in entry.quality.items():
        if key not in TASKS:
            raise CatalogError(f"{where}: quality key {key!r} is not a task; tasks are {', '.join(TASKS)}")
        if not 0.0 <= value <= 1.0:
            raise CatalogError(f"{where}: quality[{key!r}] = {value} is outside [0, 1]")
    for key, value in entry.output_tokens.items():
        if key not in TASKS:
            raise CatalogError(f"{where}: output_tokens key {key!r} is not a task; tasks are {', '.join(TASKS)}")
        if value <= 0:
            raise CatalogError(f"{where}: output_tokens[{key!r}] must be positive")


class Catalog:
    """An immutable, validated set of models with alias-aware lookup."""

    __slots__ = ("_by_id", "_by_name", "_by_route", "_providers", "as_of")

    def __init__(self, entries: Iterable[ModelEntry], *, source: str = "catalog", as_of: str = "") -> None:
        by_id: dict[str, ModelEntry] = {}
        for entry in entries:
            validate_entry(entry, source)
            if entry.id in by_id:
                raise CatalogError(f"{source}: duplicate model id {entry.id!r}")
            by_id[entry.id] = entry
        by_name: dict[str, ModelEntry] = dict(by_id)
        for entry in by_id.values():
            for alias in entry.aliases:
                other = by_name.get(alias)
                if other is not None and other.id != entry.id:
                    raise CatalogError(f"{source}: alias {alias!r} of {entry.id!r} is already {other.id!r}")
                by_name[alias] = entry
        self._by_id = by_id
        self._by_name = by_name
        # A provider's own id for a model (OpenRouter's "meta-llama/llama-3.3-70b-instruct"), where it
        # names one model only.
        owners: dict[str, set[str]] = {}
        for entry in by_id.values():
            for route in entry.routes:
                owners.setdefault(route.model, set()).add(entry.id)
        self._by_route = {m: by_id[next(iter(ids))] for m, ids in owners.items() if len(ids) == 1}
        self._providers = frozenset(r.provider for e in by_id.values() for r in e.routes)
        self.as_of = as_of

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def default(cls) -> Catalog:
        """The catalog shipped in the package."""
        raw = resources.files("models").joinpath("catalog.json").read_bytes()
        return cls.from_json(raw, source="models/catalog.json")

    @classmethod
    def from_json(cls, raw: bytes, source: str) -> Catalog:
        try:
            data = _file_decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise CatalogError(f"{source}: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise CatalogError(f"{source}: not valid JSON: {exc}") from exc
        return cls(data.models, source=source, as_of=data.as_of)

    def with_overrides(self, entries: Iterable[ModelEntry], source: str = "overrides") -> Catalog:
        """A new catalog where each entry replaces the one with its id, or is added."""
        merged = dict(self._by_id)
        for entry in entries:
            merged[entry.id] = entry
        return Catalog(merged.values(), source=source, as_of=self.as_of)

    # ------------------------------------------------------------------------------------------ lookups
    def get(self, name: str) -> ModelEntry:
        """The entry for an id, an alias, a dated snapshot id, a provider's own id, or ``provider/name``."""
        return self.resolve(name).entry

    def resolve(self, name: str) -> Resolved:
        """Like :meth:`get`, and says which provider a ``provider/`` prefix asked for."""
        entry = self._by_name.get(name)
        if entry is not None:
            return Resolved(entry, None)
        found = self._lookup(name)
        if found is None:
            raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(sorted(self._by_id))}")
        return found

    def _lookup(self, name: str) -> Resolved | None:
        prefix, sep, rest = name.partition("/")
        if sep and prefix in self._providers:
            entry = self._bare(rest) or self._by_route.get(rest)
            if entry is not None:
                return Resolved(entry, prefix)
        entry = self._bare(name)
        if entry is None:
            entry = self._by_route.get(name)
        return None if entry is None else Resolved(entry, None)

    def _bare(self, name: str) -> ModelEntry | None:
        """An id or alias, else the same without a snapshot suffix, else with dots as dashes
        (``claude-sonnet-4.5`` is ``claude-sonnet-4-5``)."""
        for candidate in (name, SNAPSHOT_SUFFIX.sub("", name)):
            for variant in (candidate, candidate.replace(".", "-")):
                entry = self._by_name.get(variant)
                if entry is not None:
                    return entry
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._by_name or self._lookup(name) is not None)

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    @property
    def vendors(self) -> tuple[str, ...]:
        return tuple(sorted({e.vendor for e in self._by_id.values()}))

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(sorted({r.provider for e in self._by_id.values() for r in e.routes}))

    def filter(
        self,
        *,
        capability: str | Iterable[str] | None = None,
        provider: str | None = None,
        vendor: str | None = None,
        max_price: float | None = None,
    ) -> list[ModelEntry]:
        """Entries with every named capability, served by ``provider``, and with a blended list price
        (mean of input and output per 1M tokens) at most ``max_price``."""
        wanted = (capability,) if isinstance(capability, str) else tuple(capability or ())
        for cap in wanted:
            if cap not in _CAPABILITIES:
                raise CatalogError(f"unknown capability {cap!r}; known: {', '.join(sorted(_CAPABILITIES))}")
        out = []
        for e in self._by_id.values():
            if any(not getattr(e.capabilities, cap) for cap in wanted):
                continue
            if provider is not None and all(r.provider != provider for r in e.routes):
                continue
            if vendor is not None and e.vendor != vendor:
                continue
            if max_price is not None and blended_price(e) > max_price:
                continue
            out.append(e)
        return out


def blended_price(entry: ModelEntry) -> float:
    """One number to sort and filter by: the mean of the input and output list prices per 1M tokens."""
    return (entry.price.input + entry.price.output) / 2.0


def load_overrides(raw: bytes | str | Mapping[str, Any], source: str) -> tuple[ModelEntry, ...]:
    """Decode a user's model overrides (``{"models": [...]}``, JSON bytes/str or an already-parsed mapping,
    e.g. from YAML). Errors name the offending key and ``source``."""
    try:
        if isinstance(raw, bytes | str):
            parsed = msgspec.json.decode(raw, type=Overrides)
        else:
            parsed = msgspec.convert(raw, type=Overrides)
    except msgspec.ValidationError as exc:
        raise CatalogError(f"{source}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise CatalogError(f"{source}: not valid JSON: {exc}") from exc
    for entry in parsed.models:
        validate_entry(entry, source)
    return parsed.models


def embedding_models(raw: bytes | None = None, source: str = "models/catalog.json") -> tuple[EmbeddingEntry, ...]:
    """The catalog's embedding models (the shipped file unless ``raw`` is given), validated."""
    if raw is None:
        raw = resources.files("models").joinpath("catalog.json").read_bytes()
    try:
        entries = _file_decoder.decode(raw).embeddings
    except msgspec.MsgspecError as exc:
        raise CatalogError(f"{source}: {exc}") from exc
    for e in entries:
        if not (e.price.input >= 0 and e.dimensions > 0 and e.max_input_tokens > 0 and e.routes):
            raise CatalogError(f"{source}: embedding model {e.id!r}: price.input >= 0, positive dimensions and "
                               "max_input_tokens, and at least one route are required")
    return entries
