"""The OpenAI Responses door, driven by the official ``openai`` SDK against a live proxy whose provider
speaks OpenAI's or Anthropic's wire format; outputs validated with the SDK's own types."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest
from doors_support import ANSWER, FORMATS, WEATHER_SCHEMA, config, upstream_path
from openai.types.responses import Response, ResponseStreamEvent

from bench.fake_upstream import FakeUpstream, Reply
from router.types import FunctionCall, ToolCall

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
TOOLS: Any = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
               "parameters": WEATHER_SCHEMA}]
CALL = ToolCall(id="call_w1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="sk-anything", max_retries=0)


def _validated(raw: Any) -> Response:
    return Response.model_validate(json.loads(raw.http_response.content))


@pytest.mark.parametrize("fmt", FORMATS)
def test_text_input_miss_then_exact_hit(serve, upstream: FakeUpstream, tmp_path: Path, fmt: str) -> None:
    live, _ = serve(config(tmp_path, upstream, fmt))
    client = _client(live.url)
    kwargs: Any = dict(model="gpt-4o-mini", instructions="Be brief.", input="What is the capital of France?",
                       max_output_tokens=100)
    raw = client.responses.with_raw_response.create(**kwargs)
    resp = _validated(raw)
    assert raw.headers["x-thrifty-cache"] == "miss"
    assert resp.status == "completed" and resp.output_text == ANSWER
    assert resp.usage is not None and resp.usage.output_tokens > 0 and resp.instructions == "Be brief."
    assert upstream.requests[-1].path == upstream_path(fmt)
    sent = upstream.requests[-1].body
    if fmt == "openai":
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent["max_completion_tokens"] == 100
    else:
        assert sent["system"] == "Be brief." and sent["max_tokens"] == 100
    raw2 = client.responses.with_raw_response.create(**kwargs)
    assert raw2.headers["x-thrifty-cache"] == "exact" and _validated(raw2).output_text == ANSWER
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_items_with_tools_round_trip(serve, upstream: FakeUpstream, tmp_path: Path, fmt: str) -> None:
    live, _ = serve(config(tmp_path, upstream, fmt))
    client = _client(live.url)
    upstream.script(Reply(tool_calls=[CALL]))
    ask: Any = [{"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}]
    first = client.responses.create(model="gpt-4o-mini", input=ask, tools=TOOLS, tool_choice="required")
    Response.model_validate(first.model_dump())
    call = next(o for o in first.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    follow = [*ask, {"type": "function_call", "call_id": call.call_id, "name": call.name,  # type: ignore[union-attr]
                     "arguments": call.arguments},  # type: ignore[union-attr]
              {"type": "function_call_output", "call_id": call.call_id, "output": "18C, sunny"}]  # type: ignore[union-attr]
    second = client.responses.create(model="gpt-4o-mini", input=follow, tools=TOOLS)
    assert second.output_text == ANSWER
    sent = upstream.requests[-1].body
    if fmt == "openai":
        assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_w1", "content": "18C, sunny"}
    else:
        assert sent["messages"][-1]["content"][0]["tool_use_id"] == "call_w1"


@pytest.mark.parametrize("fmt", FORMATS)
def test_streaming_events_and_replayed_hit(serve, upstream: FakeUpstream, tmp_path: Path, fmt: str) -> None:
    live, _ = serve(config(tmp_path, upstream, fmt))
    client = _client(live.url)
    for expected in ("miss", "exact"):
        raw = client.responses.with_raw_response.create(model="gpt-4o-mini", input="Say hi to the sea.",
                                                        stream=True)
        assert raw.headers["x-thrifty-cache"] == expected
        events = [EVENTS.validate_python(e.model_dump()) for e in raw.parse()]
        kinds = [e.type for e in events]
        assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                             "response.content_part.added"]
        assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                              "response.output_item.done", "response.completed"]
        assert [e.sequence_number for e in events] == list(range(len(events)))
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
        done = events[-1].response  # type: ignore[union-attr]
        assert deltas == ANSWER and done.output_text == ANSWER and done.usage.output_tokens > 0
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_streamed_function_call_events(serve, upstream: FakeUpstream, tmp_path: Path, fmt: str) -> None:
    live, _ = serve(config(tmp_path, upstream, fmt))
    upstream.script(Reply(tool_calls=[CALL]))
    with _client(live.url).responses.stream(model="gpt-4o-mini", input="Weather in Paris?", tools=TOOLS) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    call = final.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}


def test_json_schema_format_and_clear_400s(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(config(tmp_path, upstream, "openai"))
    client = _client(live.url)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    client.responses.create(model="gpt-4o-mini", input="Answer in JSON.",
                            text={"format": {"type": "json_schema", "name": "reply", "schema": schema}})
    assert upstream.requests[-1].body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}
    cases = [({"previous_response_id": "resp_unknown"}, "no stored response"),
             ({"tools": [{"type": "web_search"}]}, "tools"),
             ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type")]
    for extra, named in cases:
        body = {"model": "gpt-4o-mini", "input": "hi", **extra}
        r = httpx.post(live.url + "/v1/responses", json=body)
        assert r.status_code == 400, r.text
        assert named in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o-mini", input="hi", previous_response_id="resp_123")
    assert len(upstream.requests) == 1


def test_previous_response_id_chains_per_tenant(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    tenants = {"acme": {"keys": [{"name": "a", "key": "vk-acme"}]}, "zeta": {"keys": [{"name": "z", "key": "vk-zeta"}]}}
    live, _ = serve(config(tmp_path, upstream, "openai", tenants=tenants))
    acme = openai.OpenAI(base_url=live.url + "/v1", api_key="vk-acme", max_retries=0)
    first = acme.responses.create(model="gpt-4o-mini", instructions="Be brief.", input="My name is Ada.")
    assert first.store is True
    second = acme.responses.create(model="gpt-4o-mini", input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    # The earlier turn and its answer reach the upstream; the earlier instructions do not (as on OpenAI).
    assert upstream.requests[-1].body["messages"] == [
        {"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "What is my name?"}]
    # An agent loop: a streamed tool call, then only its output, chained by id.
    upstream.script(Reply(tool_calls=[CALL]))
    with acme.responses.stream(model="gpt-4o-mini", input="Weather in Paris?", tools=TOOLS,
                               previous_response_id=second.id) as stream:
        called = stream.get_final_response()
    acme.responses.create(model="gpt-4o-mini", tools=TOOLS, previous_response_id=called.id,
                          input=[{"type": "function_call_output", "call_id": "call_w1", "output": "18C"}])
    sent = upstream.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user", "assistant", "user", "assistant", "tool"]
    assert sent[5]["tool_calls"][0]["id"] == "call_w1" and sent[6] == {"role": "tool", "tool_call_id": "call_w1",
                                                                       "content": "18C"}
    # Another tenant cannot continue acme's conversation, and store=false keeps nothing.
    zeta = openai.OpenAI(base_url=live.url + "/v1", api_key="vk-zeta", max_retries=0)
    with pytest.raises(openai.BadRequestError) as other:
        zeta.responses.create(model="gpt-4o-mini", input="What is my name?", previous_response_id=first.id)
    assert "no stored response" in other.value.message
    unstored = acme.responses.create(model="gpt-4o-mini", input="Forget this.", store=False)
    assert unstored.store is False
    with pytest.raises(openai.BadRequestError):
        acme.responses.create(model="gpt-4o-mini", input="And?", previous_response_id=unstored.id)


def test_no_cache_means_nothing_stored_and_a_clear_400(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(config(tmp_path, upstream, "openai", cache={"enabled": False}))
    client = _client(live.url)
    first = client.responses.create(model="gpt-4o-mini", input="Hello")
    assert first.store is False
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gpt-4o-mini", input="Again", previous_response_id=first.id)
    assert "stores no responses" in refused.value.message
