"""The Messages and Responses doors on the other paths: the simulated provider (answers labelled), a
tool call from the simulated provider that validates against the schema, and a stream cut mid-answer
(ended by the door's own error event, never by a clean stop)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pydantic
import pytest
from anthropic.types import RawMessageStreamEvent
from doors_support import WEATHER_SCHEMA, config
from openai.types.responses import ResponseStreamEvent

from bench.fake_upstream import FakeUpstream, Reply

SIMULATED = {"providers": [{"name": "simulated", "kind": "simulated",
                            "simulated": {"latency_ms": [0.0, 0.0]}}]}


def _events(url: str, path: str, body: dict[str, Any]) -> tuple[httpx.Response, list[dict[str, Any]]]:
    with httpx.stream("POST", url + path, json=body, timeout=10) as r:
        out = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    return r, out


def test_simulated_answers_are_labelled_on_both_doors(serve, tmp_path: Path) -> None:
    live, _ = serve({"data_dir": str(tmp_path / "data"), **SIMULATED})
    claude = anthropic.Anthropic(base_url=live.url, api_key="x", max_retries=0)
    msg = claude.messages.create(model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "Hi"}])
    assert msg.model == "simulated/gpt-4o-mini" and "[simulated" in msg.content[0].text  # type: ignore[union-attr]
    with claude.messages.stream(model="gpt-4o-mini", max_tokens=50,
                                messages=[{"role": "user", "content": "Hello there"}]) as stream:
        final = stream.get_final_message()
    assert final.model == "simulated/gpt-4o-mini"
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
    resp = client.responses.create(model="gpt-4o-mini", input="Hi")
    assert resp.model == "simulated/gpt-4o-mini" and "[simulated" in resp.output_text
    with client.responses.stream(model="gpt-4o-mini", input="Hello there") as rs:
        done = rs.get_final_response()
    assert done.model == "simulated/gpt-4o-mini"


def test_simulated_tool_call_validates_against_schema(serve, tmp_path: Path) -> None:
    live, _ = serve({"data_dir": str(tmp_path / "data"), **SIMULATED})
    claude = anthropic.Anthropic(base_url=live.url, api_key="x", max_retries=0)
    msg = claude.messages.create(
        model="gpt-4o-mini", max_tokens=100, messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[{"name": "get_weather", "input_schema": WEATHER_SCHEMA}], tool_choice={"type": "any"})
    use = next(b for b in msg.content if b.type == "tool_use")
    jsonschema.validate(use.input, WEATHER_SCHEMA)  # type: ignore[union-attr]
    assert msg.stop_reason == "tool_use"


def test_stream_cut_mid_answer_ends_with_error_event(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(config(tmp_path, upstream, "openai"))
    anthropic_events = pydantic.TypeAdapter(RawMessageStreamEvent)
    responses_events = pydantic.TypeAdapter(ResponseStreamEvent)
    upstream.script(Reply(cut_after=3))
    _, events = _events(live.url, "/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 50, "stream": True,
                                                   "messages": [{"role": "user", "content": "Tell a story."}]})
    assert events[-1]["type"] == "error" and all(e["type"] != "message_stop" for e in events)
    for e in events[:-1]:
        anthropic_events.validate_python(e)
    upstream.script(Reply(cut_after=3))
    _, events = _events(live.url, "/v1/responses", {"model": "gpt-4o-mini", "input": "Tell a story.", "stream": True})
    assert events[-1]["type"] == "error" and all(e["type"] != "response.completed" for e in events)
    for e in events:
        responses_events.validate_python(e)


def test_budgets_span_every_door(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    from router.types import Usage

    tenants = {"acme": {"keys": [{"name": "acme-1", "key": "sk-acme"}],
                        "budget": {"daily_usd": {"soft": 0.02, "hard": 0.03}, "on_hard": "reject"}}}
    live, engine = serve(config(tmp_path, upstream, "openai", tenants=tenants))
    big = Usage(prompt_tokens=1000, completion_tokens=1000, total_tokens=2000)
    upstream.script(*[Reply(usage=big)] * 4)  # gpt-4o: $0.0125 a request
    claude = anthropic.Anthropic(base_url=live.url, api_key="sk-acme", max_retries=0)
    for n in range(3):
        claude.messages.create(model="gpt-4o", max_tokens=50, messages=[{"role": "user", "content": f"Question {n}?"}])
    with pytest.raises(anthropic.RateLimitError) as over:
        claude.messages.create(model="gpt-4o", max_tokens=50, messages=[{"role": "user", "content": "One more?"}])
    assert "budget" in over.value.message
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="sk-acme", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-4o", input="And another?")
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="text-embedding-3-small", input="new text")
    engine.ledger.flush()
    assert engine.ledger.spend(tenant="acme") == pytest.approx(3 * 0.0125)


def test_semantic_hits_through_messages_and_responses(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(config(tmp_path, upstream, "openai"))
    claude = anthropic.Anthropic(base_url=live.url, api_key="x", max_retries=0)
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)

    def ask_claude(q: str) -> str:
        raw = claude.messages.with_raw_response.create(model="auto", max_tokens=100,
                                                       messages=[{"role": "user", "content": q}])
        return raw.headers["x-thrifty-cache"]

    def ask_responses(q: str) -> str:
        return client.responses.with_raw_response.create(model="auto", input=q).headers["x-thrifty-cache"]

    for ask in (ask_claude, ask_responses):
        assert ask("How do I reverse a list in Python?") == "miss"
        assert ask("How can I reverse a list in Python?") == "hit"
        assert ask("How do I reverse a list in JavaScript?") == "miss"


def _recorded_calls() -> list[tuple[str, dict[str, Any]]]:
    """The tool calls of the recorded OpenAI parallel-tools stream, folded the way the openai SDK does."""
    from router.streaming import ChunkAccumulator
    from router.types import chunk_decoder

    acc = ChunkAccumulator()
    raw = (Path(__file__).parent.parent / "data" / "transcripts" / "openai_parallel_tools.sse").read_text()
    for line in raw.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            acc.feed(chunk_decoder.decode(line[6:]))
    calls = acc.response().choices[0].message.tool_calls or []
    return [(c.function.name or "", json.loads(c.function.arguments or "{}")) for c in calls]


def test_recorded_parallel_tool_calls_through_both_doors(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    """A real OpenAI stream (two parallel calls, name and id only in each call's first chunk, arguments
    split anywhere) comes out of the Messages and Responses doors as the same two calls."""
    live, _ = serve(config(tmp_path, upstream, "openai"))
    expected = _recorded_calls()
    assert len(expected) == 2
    tools: Any = [{"name": n, "input_schema": {"type": "object"}} for n, _ in expected]
    upstream.script(Reply.transcript("openai_parallel_tools"))
    claude = anthropic.Anthropic(base_url=live.url, api_key="x", max_retries=0)
    with claude.messages.stream(model="gpt-4o", max_tokens=200, tools=tools,
                                messages=[{"role": "user", "content": "Weather and stock?"}]) as stream:
        final = stream.get_final_message()
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == expected  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    upstream.script(Reply.transcript("openai_parallel_tools"))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
    fn_tools: Any = [{"type": "function", "name": n, "parameters": {"type": "object"}} for n, _ in expected]
    with client.responses.stream(model="gpt-4o", input="Weather and stock?", tools=fn_tools) as rs:
        done = rs.get_final_response()
    assert [(o.name, json.loads(o.arguments)) for o in done.output if o.type == "function_call"] == expected


def test_recorded_anthropic_tool_stream_through_responses(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    """A real Anthropic stream (text, then a tool_use whose input arrives as input_json_delta pieces, with
    pings) behind the Responses door: one message item, then the function call."""
    live, _ = serve(config(tmp_path, upstream, "anthropic"))
    upstream.script(Reply.transcript("anthropic_tool_use"))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    with client.responses.stream(model="claude-sonnet-4-5", input="Weather in Paris?", tools=tools) as rs:
        done = rs.get_final_response()
    assert [o.type for o in done.output] == ["message", "function_call"]
    assert done.output_text.startswith("I'll check the current weather in Paris")
    call = done.output[1]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"location": "Paris"}  # type: ignore[union-attr]
