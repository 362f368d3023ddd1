"""A small valid instance of a JSON schema, for the simulated provider's tool arguments and JSON answers.

It covers what function and response schemas use in practice: ``type`` (one or a list), ``properties`` /
``required`` (required ones only when ``required`` is given, else all), ``enum``, ``const``, ``anyOf`` /
``oneOf`` (the first non-null branch), ``allOf`` (merged), local ``$ref`` (``#/$defs/...``,
``#/definitions/...``), array and string length bounds, numeric bounds and ``multipleOf``, and the common
string formats. Choices that are free (which enum member, which word) come from the caller's seeded
``random.Random``, so the same request gets the same instance.
"""

from __future__ import annotations

import math
import random
from typing import Any

MAX_DEPTH = 8  # recursive schemas (a tree of nodes) stop growing here: optional parts are left out
_WORDS = ("alpha", "bravo", "paris", "tides", "report", "sample", "value", "delta")
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "hostname": "example.com",
}


def instance(schema: Any, rng: random.Random) -> Any:
    """A value that validates against ``schema`` (a JSON schema as a dict; ``True``/``{}`` mean any)."""
    return _gen(schema, rng, schema if isinstance(schema, dict) else {}, 0)


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#"):
        return {}  # remote references are not followed: anything then validates loosely
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _merge(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """allOf and $ref folded into one schema (properties and required unioned)."""
    out = {k: v for k, v in schema.items() if k not in ("allOf", "$ref")}
    parts = list(schema.get("allOf", ()))
    if "$ref" in schema:
        parts.append(_resolve(schema["$ref"], root))
    for part in parts:
        if isinstance(part, dict):
            part = _merge(part, root)
            props = {**part.get("properties", {}), **out.get("properties", {})}
            required = list(dict.fromkeys([*part.get("required", ()), *out.get("required", ())]))
            out = {**part, **out}
            if props:
                out["properties"] = props
            if required:
                out["required"] = required
    return out


def _gen(schema: Any, rng: random.Random, root: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict):
        return {} if schema is not False else None
    if "$ref" in schema or "allOf" in schema:
        schema = _merge(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        branches = [b for b in schema.get(key, ()) if not (isinstance(b, dict) and b.get("type") == "null")]
        if branches:
            return _gen(branches[0], rng, root, depth)
        if key in schema:
            return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    return _BY_TYPE.get(kind, _string)(schema, rng, root, depth)


def _object(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int) -> dict[str, Any]:
    props: dict[str, Any] = schema.get("properties", {})
    if "required" in schema or depth >= MAX_DEPTH:
        names = list(schema.get("required", ()))
    else:
        names = list(props)
    return {name: _gen(props.get(name, {}), rng, root, depth + 1) for name in names}


def _array(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int) -> list[Any]:
    low = int(schema.get("minItems", 0))
    high = schema.get("maxItems")
    count = low if depth >= MAX_DEPTH else max(low, 1)
    if high is not None:
        count = min(count, int(high))
    prefix = schema.get("prefixItems") or []
    items = schema.get("items", {})
    out = [_gen(prefix[i] if i < len(prefix) else items, rng, root, depth + 1) for i in range(count)]
    if schema.get("uniqueItems") and len(out) > 1:
        out = out[:1]
    return out


def _string(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int) -> str:
    text = _FORMATS.get(schema.get("format", ""), rng.choice(_WORDS))
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    if len(text) < low:
        text = (text * (low // max(1, len(text)) + 1))[:max(low, 1)]
    if high is not None:
        text = text[: int(high)]
    return text


def _number(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int) -> float | int:
    integer = schema.get("type") == "integer" or (isinstance(schema.get("type"), list) and "integer" in schema["type"])
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    step = schema.get("multipleOf") or 1
    if low is None:
        value = 1.0 if high is None or high > 1 else float(high)
    else:
        value = float(low)
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        value = schema["exclusiveMinimum"] + (step if integer or step != 1 else 0.5)
    value = math.ceil(value / step) * step
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        value -= step
    if high is not None and value > high:
        value = math.floor(high / step) * step
    return int(value) if integer else float(value)


def _boolean(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int) -> bool:
    return rng.random() < 0.5


def _null(schema: dict[str, Any], rng: random.Random, root: dict[str, Any], depth: int) -> None:
    return None


_BY_TYPE = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _number,
    "number": _number,
    "boolean": _boolean,
    "null": _null,
}
