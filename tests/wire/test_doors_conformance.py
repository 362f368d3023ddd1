"""The other doors against the same independent reference: every Responses API object and stream event,
and every embeddings answer, validated by the official OpenAPI description (``Response``,
``ResponseStreamEvent``, ``CreateEmbeddingResponse``), behind each provider wire format."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from wire_references import CONFORMANCE
from wire_support import sse_data

from bench.fake_upstream import FakeUpstream, Reply
from router.types import FunctionCall, ToolCall

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": True,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                         "additionalProperties": False}}]
CALL = ToolCall(id="call_doors_1", function=FunctionCall(name="get_weather", arguments='{"city": "Rome"}'))
RESPONSE_PROVIDERS = ["openai", "anthropic", "cortex", "simulated"]


def _responses(live: Any, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=live.url, timeout=30) as h:
        r = h.post("/v1/responses", json=body)
    assert r.status_code == 200, r.text
    return r


def _events(provider: str, path: str, r: httpx.Response) -> list[dict[str, Any]]:
    """Every event of a Responses stream validated; the completed response validated as a Response too."""
    events = [json.loads(d) for d in sse_data(r.text) if d != "[DONE]"]
    for event in events:
        CONFORMANCE.other(provider, path, "ResponseStreamEvent", event)
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    CONFORMANCE.other(provider, path, "Response", events[-1]["response"])
    assert [e["sequence_number"] for e in events] == list(range(events[0]["sequence_number"],
                                                                events[0]["sequence_number"] + len(events)))
    return events


@pytest.mark.parametrize("provider", RESPONSE_PROVIDERS)
def test_responses_objects_and_events(provider: str, proxies: dict[str, Any], fake: FakeUpstream) -> None:
    live, _ = proxies[provider]
    body = {"model": "auto", "instructions": "Be brief.", "input": "Say something kind about rivers."}
    first = _responses(live, body)
    CONFORMANCE.other(provider, "responses miss", "Response", first.json())
    assert first.json()["status"] == "completed" and first.json()["output"][0]["type"] == "message"
    again = _responses(live, body)
    assert again.headers["x-thrifty-cache"] == "exact"
    CONFORMANCE.other(provider, "responses exact hit", "Response", again.json())

    streamed = _events(provider, "responses stream", _responses(live, {**body, "input": "Say hi to the sea.",
                                                                        "stream": True}))
    text = "".join(e["delta"] for e in streamed if e["type"] == "response.output_text.delta")
    assert text and streamed[-1]["response"]["output"][0]["content"][0]["text"] == text


@pytest.mark.parametrize("provider", RESPONSE_PROVIDERS)
def test_responses_function_calls(provider: str, proxies: dict[str, Any], fake: FakeUpstream) -> None:
    live, _ = proxies[provider]
    fake.script(Reply(tool_calls=[CALL]), Reply(tool_calls=[CALL]))
    ask = [{"role": "user", "content": [{"type": "input_text", "text": "What's the weather in Rome?"}]}]
    r = _responses(live, {"model": "auto", "input": ask, "tools": TOOLS, "tool_choice": "required"})
    CONFORMANCE.other(provider, "responses tools", "Response", r.json())
    call = next(item for item in r.json()["output"] if item["type"] == "function_call")
    assert call["name"] == "get_weather" and json.loads(call["arguments"])["city"]
    streamed = _events(provider, "responses tools stream", _responses(live, {
        "model": "auto", "input": "What's the weather in Rome tonight?", "tools": TOOLS, "tool_choice": "required",
        "stream": True}))
    done = next(e for e in streamed if e["type"] == "response.function_call_arguments.done")
    assert json.loads(done["arguments"])["city"]


@pytest.mark.parametrize("provider", ["openai", "simulated"])
def test_embeddings_answers(provider: str, proxies: dict[str, Any], fake: FakeUpstream) -> None:
    live, _ = proxies[provider]
    with httpx.Client(base_url=live.url, timeout=30) as h:
        for path in ("embeddings miss", "embeddings exact hit"):
            r = h.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["a cat", "a dog"]})
            assert r.status_code == 200, r.text
            CONFORMANCE.other(provider, path, "CreateEmbeddingResponse", r.json())
            assert [d["index"] for d in r.json()["data"]] == [0, 1]


ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather for a city", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def _messages(live: Any, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=live.url, timeout=30) as h:
        r = h.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    return r


def _anthropic_events(provider: str, path: str, r: httpx.Response) -> list[dict[str, Any]]:
    """Every event validated by the SDK's event union, and in the order Anthropic's streams have them."""
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter

    adapter = TypeAdapter(RawMessageStreamEvent)
    events = [json.loads(d) for d in sse_data(r.text)]
    for event in events:
        if event["type"] != "ping":  # ping is not in the SDK's union; its clients skip it
            CONFORMANCE.sdk(provider, path, "RawMessageStreamEvent", adapter.validate_python, event)
    kinds = [e["type"] for e in events if e["type"] != "ping"]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"], kinds
    open_block = None
    for e in events:  # blocks open, take deltas, close, one at a time, indexes in order
        if e["type"] == "content_block_start":
            assert open_block is None
            open_block = e["index"]
        elif e["type"] in ("content_block_delta", "content_block_stop"):
            assert e["index"] == open_block
            open_block = None if e["type"] == "content_block_stop" else open_block
    assert open_block is None
    return events


@pytest.mark.parametrize("provider", RESPONSE_PROVIDERS)
def test_messages_door_bodies_and_events(provider: str, proxies: dict[str, Any], fake: FakeUpstream) -> None:
    from anthropic.types import Message

    live, _ = proxies[provider]
    fake.script(Reply(), Reply(), Reply(tool_calls=[CALL]), Reply(tool_calls=[CALL]))
    ask = {"model": "auto", "max_tokens": 256, "messages": [{"role": "user", "content": "Name a calm colour."}]}
    for path in ("messages miss", "messages exact hit"):
        body = _messages(live, ask).json()
        CONFORMANCE.sdk(provider, path, "Message", Message.model_validate, body)
        assert body["type"] == "message" and body["role"] == "assistant" and body["content"][0]["text"]
    events = _anthropic_events(provider, "messages stream", _messages(live, {
        **ask, "messages": [{"role": "user", "content": "Name a warm colour."}], "stream": True}))
    assert "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    tool_ask = {**ask, "messages": [{"role": "user", "content": "Weather in Rome?"}], "tools": ANTHROPIC_TOOLS,
                "tool_choice": {"type": "any"}}
    body = _messages(live, tool_ask).json()
    CONFORMANCE.sdk(provider, "messages tools", "Message", Message.model_validate, body)
    use = next(b for b in body["content"] if b["type"] == "tool_use")
    assert use["name"] == "get_weather" and use["input"]["city"] and body["stop_reason"] == "tool_use"
    events = _anthropic_events(provider, "messages tools stream", _messages(live, {
        **tool_ask, "messages": [{"role": "user", "content": "Weather in Rome tonight?"}], "stream": True}))
    partial = "".join(e["delta"].get("partial_json", "") for e in events if e["type"] == "content_block_delta")
    assert json.loads(partial)["city"]
