"""The Anthropic Messages door, driven by the official ``anthropic`` SDK against a live proxy whose provider
speaks OpenAI's wire format or Anthropic's (the fake upstream), streaming and tools included; outputs are
validated with the SDK's own pydantic types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pydantic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from doors_support import ANSWER, FORMATS, WEATHER_SCHEMA, config, upstream_path

from bench.fake_upstream import FakeUpstream, Reply
from router.types import FunctionCall, ToolCall

EVENTS = pydantic.TypeAdapter(RawMessageStreamEvent)
TOOLS: Any = [{"name": "get_weather", "description": "Weather for a city", "input_schema": WEATHER_SCHEMA}]
CALL = ToolCall(id="call_w1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))


def _client(url: str, key: str = "sk-anything") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


def _sse_events(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[httpx.Response, list]:
    """Raw SSE from the door: (response, [(event name, data)]), every data validated by the SDK's union."""
    with httpx.stream("POST", url + "/v1/messages", json=body, headers=headers or {}, timeout=10) as r:
        events, name = [], None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["type"] == name
                events.append((name, EVENTS.validate_python(data)))
    return r, events


@pytest.mark.parametrize("fmt", FORMATS)
def test_create_miss_then_exact_hit(serve, upstream: FakeUpstream, tmp_path: Path, fmt: str) -> None:
    live, _ = serve(config(tmp_path, upstream, fmt))
    client = _client(live.url)
    kwargs: Any = dict(model="gpt-4o-mini", max_tokens=200, system="Be brief.",
                       messages=[{"role": "user", "content": "What is the boiling point of water in Celsius?"}])
    raw = client.messages.with_raw_response.create(**kwargs)
    msg = Message.model_validate(json.loads(raw.http_response.content))
    assert raw.headers["x-thrifty-cache"] == "miss"
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text" and msg.content[0].text == ANSWER
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert upstream.requests[-1].path == upstream_path(fmt)
    sent = upstream.requests[-1].body
    if fmt == "openai":
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent["max_completion_tokens"] == 200
    else:
        assert sent["system"] == "Be brief." and sent["max_tokens"] == 200
    raw2 = client.messages.with_raw_response.create(**kwargs)
    assert raw2.headers["x-thrifty-cache"] == "exact"
    assert float(raw2.headers["x-thrifty-cost-usd"]) == 0
    assert raw2.parse().content[0].text == ANSWER  # type: ignore[union-attr]
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_event_sequence_then_replayed_hit(serve, upstream: FakeUpstream, tmp_path: Path, fmt: str) -> None:
    live, _ = serve(config(tmp_path, upstream, fmt))
    client = _client(live.url)
    messages: Any = [{"role": "user", "content": "Write one sentence about the sea."}]
    with client.messages.stream(model="gpt-4o-mini", max_tokens=100, messages=messages) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER and final.content[0].text == ANSWER  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    assert len(upstream.requests) == 1 and upstream.requests[0].body.get("stream") is True
    # The same request again is an exact hit, replayed as the same event sequence.
    body = {"model": "gpt-4o-mini", "max_tokens": 100, "messages": messages, "stream": True}
    r, events = _sse_events(live.url, body)
    assert r.headers["x-thrifty-cache"] == "exact"
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names[1] == "content_block_start" and names[-3] == "content_block_stop"
    assert set(names[2:-3]) == {"content_block_delta"}
    assert "".join(e.delta.text for n, e in events if n == "content_block_delta") == ANSWER
    assert events[-2][1].delta.stop_reason == "end_turn"
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("streamed", [False, True])
def test_tools_round_trip(serve, upstream: FakeUpstream, tmp_path: Path, fmt: str, streamed: bool) -> None:
    live, _ = serve(config(tmp_path, upstream, fmt))
    client = _client(live.url)
    upstream.script(Reply(tool_calls=[CALL]))
    ask: Any = [{"role": "user", "content": "Weather in Paris?"}]
    kwargs: Any = dict(model="gpt-4o-mini", max_tokens=100, tools=TOOLS, tool_choice={"type": "any"}, messages=ask)
    if streamed:
        with client.messages.stream(**kwargs) as stream:
            msg = stream.get_final_message()
    else:
        msg = client.messages.create(**kwargs)
    Message.model_validate(msg.model_dump())
    assert msg.stop_reason == "tool_use"
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"} and use.id == "call_w1"  # type: ignore[union-attr]
    sent = upstream.requests[-1].body
    if fmt == "openai":
        assert sent["tools"][0]["function"]["parameters"] == WEATHER_SCHEMA and sent["tool_choice"] == "required"
    else:
        assert sent["tools"][0]["input_schema"] == WEATHER_SCHEMA and sent["tool_choice"]["type"] == "any"
    # The tool's result goes back as Anthropic blocks and reaches the upstream in its own format.
    follow = [*ask, {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_w1", "content": "18C, sunny"}]}]
    answer = client.messages.create(model="gpt-4o-mini", max_tokens=100, tools=TOOLS, messages=follow)
    assert answer.content[0].text == ANSWER  # type: ignore[union-attr]
    sent = upstream.requests[-1].body
    if fmt == "openai":
        assert sent["messages"][-2]["tool_calls"][0]["id"] == "call_w1"
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_w1", "content": "18C, sunny"}
    else:
        assert sent["messages"][-1]["content"][0] == {"type": "tool_result", "tool_use_id": "call_w1",
                                                      "content": "18C, sunny"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_tool_events_validate(serve, upstream: FakeUpstream, tmp_path: Path, fmt: str) -> None:
    live, _ = serve(config(tmp_path, upstream, fmt))
    upstream.script(Reply(text="Let me check.", tool_calls=[CALL]))
    body = {"model": "gpt-4o-mini", "max_tokens": 50, "stream": True, "tools": TOOLS,
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    _, events = _sse_events(live.url, body)
    starts = [e.content_block for n, e in events if n == "content_block_start"]
    assert [b.type for b in starts] == ["text", "tool_use"] and starts[1].name == "get_weather"
    partial = "".join(e.delta.partial_json for n, e in events
                      if n == "content_block_delta" and e.delta.type == "input_json_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert events[-2][1].delta.stop_reason == "tool_use"


def test_count_tokens_and_errors_in_anthropic_shape(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    keys = {"tenants": {"acme": {"keys": [{"name": "k1", "key": "vk-acme-1"}]}}}
    live, _ = serve(config(tmp_path, upstream, "openai", **keys))
    client = _client(live.url, key="vk-acme-1")
    short = client.messages.count_tokens(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
    long = client.messages.count_tokens(model="gpt-4o-mini", system="You are a careful assistant.",
                                        messages=[{"role": "user", "content": "Explain TCP slow start. " * 20}])
    assert 0 < short.input_tokens < long.input_tokens
    with pytest.raises(anthropic.AuthenticationError) as auth:
        _client(live.url, key="vk-wrong").messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    assert auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    bad = httpx.post(live.url + "/v1/messages", headers={"x-api-key": "vk-acme-1"},
                     json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
    assert bad.status_code == 400
    err = bad.json()
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in err["error"]["message"]
    top_k = httpx.post(live.url + "/v1/messages", headers={"x-api-key": "vk-acme-1"}, json={
        "model": "gpt-4o-mini", "max_tokens": 5, "top_k": 3, "messages": [{"role": "user", "content": "Hi"}]})
    assert top_k.status_code == 400 and "top_k" in top_k.json()["error"]["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_claude_code_shaped_request(serve, upstream: FakeUpstream, tmp_path: Path, fmt: str) -> None:
    """The body shape Claude Code sends: system blocks and tools with cache_control, metadata.user_id,
    thinking and context_management (accepted, not applied, named in a header), streamed."""
    live, _ = serve(config(tmp_path, upstream, fmt))
    body = {
        "model": "gpt-4o-mini", "max_tokens": 8000, "stream": True, "temperature": 1,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "List the files.",
                                                   "cache_control": {"type": "ephemeral"}}]}],
        "tools": [{"name": "Bash", "description": "Run a command", "cache_control": {"type": "ephemeral"},
                   "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "metadata": {"user_id": "user_abc_account__session_1"},
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
    }
    r, events = _sse_events(live.url, body, headers={"anthropic-version": "2023-06-01",
                                                     "anthropic-beta": "claude-code-20250219"})
    assert r.status_code == 200
    assert r.headers["x-thrifty-ignored-fields"] == "thinking, context_management"
    assert events[-1][0] == "message_stop"
    sent = upstream.requests[-1].body
    assert "thinking" not in sent and "context_management" not in sent
    if fmt == "openai":
        assert sent["messages"][0] == {"role": "system", "content": "You are Claude Code."}
        assert sent["user"] == "user_abc_account__session_1"
    else:
        assert sent["system"] == "You are Claude Code." and sent["metadata"]["user_id"] == "user_abc_account__session_1"
