"""What the wire tests share: references nobody here wrote, a tally of what was checked, live proxies.

- ``Conformance.body`` / ``.chunk`` / ``.error``: one JSON document the proxy emitted, validated against
  the official OpenAI OpenAPI description (tests/data/openapi/) and, for answers, against the official
  SDK's own types (``openai.types.chat.ChatCompletion`` / ``ChatCompletionChunk``) in pydantic's strict
  mode. Every check is counted per (provider, path) so the run can print what it covered.
- ``sse_data``: the ``data:`` payloads of an SSE body, as a client's parser sees them.
- ``proxy``: a live uvicorn proxy (tests/engine/conftest.py's ``LiveServer``) for one provider config.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from bench.fake_upstream import FakeUpstream
from engine import Engine
from engine.server import create_app

DATA = Path(__file__).resolve().parents[1] / "data"
ANSWER = "Hello from the fake upstream. The answer is 42."


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
        value = value.values()
    if isinstance(value, (list, tuple, Iterator, type({}.values()))) and not isinstance(value, (str, bytes)):
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


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body in order (comment lines skipped, multi-line data joined)."""
    out: list[str] = []
    for event in text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:")]
        if data:
            out.append("\n".join(data))
    return out


def post_json(live: Any, provider: str, path: str, body: dict[str, Any], expect_cache: str) -> dict[str, Any]:
    with httpx.Client(base_url=live.url, timeout=30) as h:
        r = h.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-thrifty-cache"] == expect_cache, (path, r.headers["x-thrifty-cache"])
    document = r.json()
    CONFORMANCE.body(provider, path, document)
    return document


def post_stream(live: Any, provider: str, path: str, body: dict[str, Any], expect_cache: str) -> list[dict[str, Any]]:
    """The stream's chunks, each validated; the stream must end with ``data: [DONE]``."""
    with httpx.Client(base_url=live.url, timeout=30) as h:
        r = h.post("/v1/chat/completions", json={**body, "stream": True})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-thrifty-cache"] == expect_cache, (path, r.headers["x-thrifty-cache"])
    data = sse_data(r.text)
    assert data and data[-1] == "[DONE]", data[-2:]
    chunks = [json.loads(d) for d in data[:-1]]
    for chunk in chunks:
        CONFORMANCE.chunk(provider, path, chunk)
    asked = bool((body.get("stream_options") or {}).get("include_usage"))
    usage_chunks = [c for c in chunks if not c["choices"]]
    # a usage chunk (choices: []) only when the client asked for it, then exactly one, last
    assert len(usage_chunks) == (1 if asked else 0), (path, asked, len(usage_chunks))
    if asked:
        assert chunks[-1] is usage_chunks[0] and chunks[-1]["usage"]["total_tokens"] > 0
    assert len({c["id"] for c in chunks}) == 1  # one completion id over the whole stream
    first: dict[int, dict[str, Any]] = {}
    for c in chunks:
        for choice in c["choices"]:
            first.setdefault(choice["index"], choice["delta"])
    assert first and all(d.get("role") == "assistant" for d in first.values()), (path, first)  # as OpenAI sends
    return chunks


def joined_text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def joined_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """Tool-call deltas merged the way OpenAI's clients do: id and name from the first, arguments added."""
    calls: dict[int, dict[str, str]] = {}
    for c in chunks:
        for choice in c["choices"]:
            for d in choice["delta"].get("tool_calls") or ():
                call = calls.setdefault(d["index"], {"id": "", "name": "", "arguments": ""})
                call["id"] = call["id"] or d.get("id") or ""
                fn = d.get("function") or {}
                call["name"] = call["name"] or fn.get("name") or ""
                call["arguments"] += fn.get("arguments") or ""
    return calls


def finish_of(chunks: list[dict[str, Any]]) -> str | None:
    return next((c["choices"][0]["finish_reason"] for c in reversed(chunks)
                 if c["choices"] and c["choices"][0]["finish_reason"]), None)


def _live_server_class() -> Any:
    """tests/engine/conftest.py's LiveServer: loaded by path, because a bare ``import conftest`` resolves to
    whichever folder's conftest came first."""
    path = Path(__file__).resolve().parents[1] / "engine" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_engine_conftest_for_wire", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LiveServer


PROVIDERS = ("openai", "anthropic", "cortex", "simulated")


def provider_config(kind: str, upstream: FakeUpstream) -> dict[str, Any]:
    """One provider of each wire format, the HTTP ones aimed at the fake upstream, no retries to wait on."""
    retries = {"attempts": 1, "backoff_base": 0.01}
    return {
        "openai": {"name": "openai", "kind": "openai-compatible", "base_url": upstream.url + "/v1", "retries": retries},
        "anthropic": {"name": "anthropic", "kind": "anthropic", "base_url": upstream.url, "retries": retries},
        "cortex": {"name": "cortex", "kind": "cortex", "base_url": upstream.url, "retries": retries,
                   "auth_token_type": "PROGRAMMATIC_ACCESS_TOKEN"},
        "simulated": {"name": "simulated", "kind": "simulated", "simulated": {"latency_ms": [0.0, 0.0]}},
    }[kind]


@contextmanager
def proxy(kind: str, upstream: FakeUpstream, data_dir: Path, encoder: Any) -> Iterator[tuple[Any, Engine]]:
    """A live proxy whose only provider speaks ``kind``'s wire format; every catalog model routes to it."""
    config = {"data_dir": str(data_dir), "providers": [provider_config(kind, upstream)],
              "routes": {kind: ["*"]}, "dispatch": {"deadline_s": 10}}
    engine = Engine.from_config(config, encoder=encoder)
    live = _live_server_class()(create_app(engine))
    try:
        yield live, engine
    finally:
        live.stop()
