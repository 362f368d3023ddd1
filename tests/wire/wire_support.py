"""What the wire tests share besides the references (wire_references): requests to a live proxy whose
answers are validated and counted on the way, and the proxies themselves.

- ``post_json`` / ``post_stream``: one chat request, its body or every chunk checked by CONFORMANCE.
- ``sse_data``: the ``data:`` payloads of an SSE body, as a client's parser sees them.
- ``proxy``: a live uvicorn proxy (tests/live_server.py's ``LiveServer``) for one provider config.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from live_server import LiveServer
from wire_references import CONFORMANCE

from bench.fake_upstream import FakeUpstream
from engine import Engine


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


def settle(engine: Engine) -> None:
    """Wait for the cache writes queued so far: a miss's answer is stored off the request path, and only
    the exact lookup sees a write still in flight; a semantic hit needs it to have landed."""
    asyncio.run(engine.flush())


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
    live = LiveServer.of(engine)
    try:
        yield live, engine
    finally:
        live.stop()
