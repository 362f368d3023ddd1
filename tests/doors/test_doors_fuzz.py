"""Bad input on every door is a clear 4xx in that door's error shape, never a 500: valid bodies mutated by
hypothesis (fields replaced by arbitrary JSON, removed, unknown ones added), sent to a live proxy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
from doors_support import config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fake_upstream import FakeUpstream

EXAMPLES = int(os.environ.get("THRIFTY_FUZZ_EXAMPLES", "40"))
BASES: dict[str, dict[str, Any]] = {
    "/v1/messages": {"model": "gpt-4o-mini", "max_tokens": 20, "system": "Be brief.",
                     "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                     "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "auto"}},
    "/v1/responses": {"model": "gpt-4o-mini", "instructions": "Be brief.",
                      "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                                {"type": "function_call_output", "call_id": "c1", "output": "ok"}],
                      "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]},
    "/v1/embeddings": {"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float"},
    "/v1/messages/count_tokens": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
}
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: Any) -> tuple[str, Any]:
    import copy

    path = draw(st.sampled_from(sorted(BASES)))
    body = copy.deepcopy(BASES[path])
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(_paths(body) or [("model",)]))
        parent = body
        for key in where[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[where[-1]] = draw(JSON)
        elif action == "delete" and isinstance(parent, dict):
            parent.pop(where[-1], None)
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(JSON)
    return path, body


def test_mutated_bodies_never_500(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(config(tmp_path, upstream))
    seen: dict[int, int] = {}
    with httpx.Client(base_url=live.url, timeout=10) as h:

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(mutated())
        def check(case: tuple[str, Any]) -> None:
            path, body = case
            r = h.post(path, json=body)
            seen[r.status_code] = seen.get(r.status_code, 0) + 1
            assert r.status_code < 500, (path, body, r.text)
            if r.status_code >= 400:
                err = r.json()
                if path.startswith("/v1/messages"):
                    assert err["type"] == "error" and err["error"]["message"], err
                else:
                    assert err["error"]["message"], err

        check()
    print(f"doors fuzz: {EXAMPLES} examples, responses by status {dict(sorted(seen.items()))}")  # shown with -s
    assert any(400 <= s < 500 for s in seen)  # the mutations did reach the error paths
