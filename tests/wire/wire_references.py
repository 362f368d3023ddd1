"""The references nobody here wrote, and the tally of what was checked against them.

- The official OpenAI OpenAPI description (tests/data/openapi/), loaded once as JSON Schema 2020-12:
  ``schema_errors(name, document)``.
- The official SDKs' own types in pydantic's strict mode: ``openai.types.chat.ChatCompletion`` /
  ``ChatCompletionChunk`` beside the schema; ``anthropic.types`` for Anthropic's format, which the OpenAPI
  file does not describe.
- ``CONFORMANCE``: every check counted per (provider, path); ``table()`` is printed at the end of the run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from openai.types.chat import ChatCompletion, ChatCompletionChunk

DATA = Path(__file__).resolve().parents[1] / "data"


def _openapi_nullable(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` (still on a few properties of the 3.1 file) means null is allowed;
    JSON Schema has no such keyword, so it is spelled out as ``anyOf [..., null]`` at load time."""
    if isinstance(node, dict):
        out = {k: _openapi_nullable(v) for k, v in node.items() if k != "nullable"}
        return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") is True else out
    if isinstance(node, list):
        return [_openapi_nullable(v) for v in node]
    return node


def _recursive_to_ref(node: Any, name: str) -> Any:
    """Draft 2019-09's ``$recursiveRef: "#"`` inside a schema marked ``$recursiveAnchor`` means "this schema
    again" (the spec's ``CompoundFilter`` nests itself); as a standalone ``$def`` that is a plain ``$ref``."""
    if isinstance(node, dict):
        if node.get("$recursiveRef") == "#":
            return {"$ref": f"#/$defs/{name}"}
        return {k: _recursive_to_ref(v, name) for k, v in node.items() if k != "$recursiveAnchor"}
    if isinstance(node, list):
        return [_recursive_to_ref(v, name) for v in node]
    return node


def _errata(defs: dict[str, Any]) -> dict[str, Any]:
    """One known contradiction, settled for null: ``Response.usage`` is a bare ``$ref`` in the schema, but
    the description's own example of ``response.created`` sends ``"usage": null`` on the in-progress
    response, and the official SDK types it ``Optional[ResponseUsage]``. Nothing else is relaxed."""
    usage = defs["Response"]["allOf"][2]["properties"]["usage"]
    defs["Response"]["allOf"][2]["properties"]["usage"] = {"anyOf": [usage, {"type": "null"}]}
    return defs


@cache
def _definitions() -> dict[str, Any]:
    doc = json.loads((DATA / "openapi" / "openai_wire_schemas.json").read_text())
    return _errata({name: _openapi_nullable(_recursive_to_ref(schema, name)) for name, schema in doc["$defs"].items()})


@cache
def _checked_definitions() -> dict[str, Any]:
    """The definitions, checked once against the Draft 2020-12 metaschema (a typo in them is an error)."""
    defs = _definitions()
    jsonschema.Draft202012Validator.check_schema({"$defs": defs})
    return defs


@cache
def validator(schema: str) -> jsonschema.protocols.Validator:
    """A Draft 2020-12 validator for one named schema of the OpenAPI file (made once per name)."""
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{schema}", "$defs": _checked_definitions()})


def schema_errors(schema: str, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator(schema).iter_errors(document)]


class Conformance:
    """Validates and counts; a failure is recorded and raised, so a test stops on the first one."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (provider, path, check) -> documents
        self.failures: list[str] = []

    def _check(self, provider: str, path: str, schema: str, document: Any, sdk: Any | None) -> None:
        problems = schema_errors(schema, document)
        if sdk is not None and not problems:
            try:
                sdk.model_validate(document, strict=True)
            except Exception as exc:  # pydantic's ValidationError, reported with the document
                problems.append(f"{sdk.__name__}: {exc}")
        if problems:
            line = f"[{provider} / {path}] {schema}: {problems[:3]} in {json.dumps(document)[:400]}"
            self.failures.append(line)
            raise AssertionError(line)
        self.counts[provider, path, "openapi " + schema] += 1
        if sdk is not None:
            self.counts[provider, path, "sdk " + sdk.__name__] += 1

    def body(self, provider: str, path: str, document: Any) -> None:
        self._check(provider, path, "CreateChatCompletionResponse", document, ChatCompletion)

    def chunk(self, provider: str, path: str, document: Any) -> None:
        self._check(provider, path, "CreateChatCompletionStreamResponse", document, ChatCompletionChunk)

    def error(self, provider: str, path: str, document: Any) -> None:
        self._check(provider, path, "ErrorResponse", document, None)

    def other(self, provider: str, path: str, schema: str, document: Any) -> None:
        self._check(provider, path, schema, document, None)

    def sdk(self, provider: str, path: str, name: str, validate: Any, document: Any) -> None:
        """A document of a format the OpenAPI file does not describe (Anthropic's), by an SDK type alone."""
        try:
            validate(document, strict=True)
        except Exception as exc:  # pydantic's ValidationError, reported with the document
            line = f"[{provider} / {path}] {name}: {exc} in {json.dumps(document)[:400]}"
            self.failures.append(line)
            raise AssertionError(line) from exc
        self.counts[provider, path, "sdk " + name] += 1

    def upstream_requests(self, requests: list[Any]) -> None:
        """What thrifty sent the fake upstream, by the reference of the format it went out in: OpenAI's
        requests by the OpenAPI description, Anthropic's by the anthropic SDK's ``MessageCreateParams``
        (Cortex has no published schema to hold them to)."""
        for recorded in requests:
            if recorded.path.endswith("/chat/completions"):
                self.other("openai", "upstream request", "CreateChatCompletionRequest", recorded.body)
            elif recorded.path.endswith("/embeddings"):
                self.other("openai", "upstream request", "CreateEmbeddingRequest", recorded.body)
            elif recorded.path == "/v1/messages":
                self.sdk("anthropic", "upstream request", "MessageCreateParams", _anthropic_request, recorded.body)

    def table(self) -> str:
        """Documents checked per provider and path: bodies, chunks, errors, each by both references."""
        rows: dict[tuple[str, str], Counter[str]] = {}
        for (provider, path, check), n in self.counts.items():
            rows.setdefault((provider, path), Counter())[check] += n
        head = f"{'provider':<12} {'path':<38} {'bodies':>6} {'chunks':>6} {'errors':>6} {'other':>5} {'sdk':>5}"
        lines = [head, "-" * len(head)]
        total: Counter[str] = Counter()
        for (provider, path), c in sorted(rows.items()):
            cells = {"bodies": c["openapi CreateChatCompletionResponse"],
                     "chunks": c["openapi CreateChatCompletionStreamResponse"],
                     "errors": c["openapi ErrorResponse"],
                     "sdk": sum(n for k, n in c.items() if k.startswith("sdk "))}
            cells["other"] = sum(n for k, n in c.items() if k.startswith("openapi")) - (
                cells["bodies"] + cells["chunks"] + cells["errors"])
            total.update(cells)
            lines.append(f"{provider:<12} {path:<38} {cells['bodies']:>6} {cells['chunks']:>6} {cells['errors']:>6} "
                         f"{cells['other']:>5} {cells['sdk']:>5}")
        lines.append(f"{'total':<51} {total['bodies']:>6} {total['chunks']:>6} {total['errors']:>6} "
                     f"{total['other']:>5} {total['sdk']:>5}   failures: {len(self.failures)}")
        return "\n".join(lines)


def _drain(value: Any) -> None:
    """pydantic validates an ``Iterable[...]`` field lazily, as it is iterated: iterate everything."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple, Iterator)):  # a str is no Iterator
        for item in value:
            _drain(item)


@cache
def _anthropic_params() -> Any:
    from anthropic.types import MessageCreateParams
    from pydantic import TypeAdapter

    return TypeAdapter(MessageCreateParams)


def _anthropic_request(document: Any, *, strict: bool) -> None:
    _drain(_anthropic_params().validate_python(document, strict=strict))


CONFORMANCE = Conformance()
