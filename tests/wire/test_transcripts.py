"""Recorded provider streams (tests/data/transcripts/, from the official SDKs' fixtures) replayed by the fake
upstream through the proxy: what the client receives must add up to what the provider sent, in chunks the
OpenAPI schema and the SDK types accept, on the miss and on the cache's replay of it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from wire_references import CONFORMANCE, DATA
from wire_support import finish_of, joined_calls, joined_text, post_stream, sse_data

from bench.fake_upstream import FakeUpstream, Reply

TOOLS = [{"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
         for name in ("get_weather", "GetWeatherArgs", "get_stock_price")]


def recorded_openai(name: str) -> list[dict[str, Any]]:
    data = sse_data((DATA / "transcripts" / f"{name}.sse").read_text())
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def recorded_anthropic(name: str) -> tuple[str, list[tuple[str, str, str]], str]:
    """(text, [(tool id, name, arguments JSON)], stop_reason) as the recorded events say."""
    text, calls, stop = "", {}, ""
    for d in sse_data((DATA / "transcripts" / f"{name}.sse").read_text()):
        event = json.loads(d)
        if event["type"] == "content_block_start" and event["content_block"]["type"] == "tool_use":
            block = event["content_block"]
            calls[event["index"]] = [block["id"], block["name"], ""]
        elif event["type"] == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                text += delta["text"]
            else:
                calls[event["index"]][2] += delta["partial_json"]
        elif event["type"] == "message_delta":
            stop = event["delta"]["stop_reason"]
    return text, [tuple(c) for c in calls.values()], stop  # type: ignore[misc]


def _ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "tools": TOOLS, **extra}


@pytest.mark.parametrize("name", ["openai_text", "openai_tool_call", "openai_parallel_tools"])
def test_recorded_openai_streams(name: str, proxies: dict[str, Any], fake: FakeUpstream) -> None:
    live, _ = proxies["openai"]
    recorded = recorded_openai(name)
    fake.script(Reply.transcript(name))
    body = _ask(f"Replay the recording {name}.", stream_options={"include_usage": True})
    streamed = post_stream(live, "openai", f"recorded {name}", body, "miss")
    assert fake.requests[-1].body["stream"] is True
    assert joined_text(streamed) == joined_text(recorded)
    calls = joined_calls(streamed)
    assert calls == joined_calls(recorded)
    for call in calls.values():
        assert call["id"] and call["name"] and isinstance(json.loads(call["arguments"]), dict)
    assert finish_of(streamed) == finish_of(recorded)
    assert streamed[-1]["usage"]["total_tokens"] == recorded[-1]["usage"]["total_tokens"]
    replay = post_stream(live, "openai", f"recorded {name} replay", _ask(f"Replay the recording {name}."), "exact")
    assert joined_calls(replay) == calls and joined_text(replay) == joined_text(streamed)


@pytest.mark.parametrize("name", ["anthropic_text", "anthropic_tool_use"])
def test_recorded_anthropic_streams(name: str, proxies: dict[str, Any], fake: FakeUpstream) -> None:
    live, _ = proxies["anthropic"]
    text, calls, stop = recorded_anthropic(name)
    fake.script(Reply.transcript(name))
    streamed = post_stream(live, "anthropic", f"recorded {name}", _ask(f"Replay the recording {name}."), "miss")
    assert joined_text(streamed) == text
    got = joined_calls(streamed)
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in got.values()] == [
        (i, n, json.loads(a)) for i, n, a in calls]
    assert finish_of(streamed) == {"end_turn": "stop", "tool_use": "tool_calls"}[stop]
    replay = post_stream(live, "anthropic", f"recorded {name} replay", _ask(f"Replay the recording {name}."), "exact")
    assert joined_calls(replay) == got and joined_text(replay) == text


def test_recorded_anthropic_error_event_after_content(proxies: dict[str, Any], fake: FakeUpstream) -> None:
    """An ``error`` event after text was sent: the client gets the text, then an explicit error, no [DONE]."""
    live, _ = proxies["anthropic"]
    fake.script(Reply.transcript("anthropic_error_midstream"))
    with httpx.Client(base_url=live.url, timeout=30) as h:
        r = h.post("/v1/chat/completions", json=_ask("Overload after the first word.", stream=True))
    data = sse_data(r.text)
    assert data[-1] != "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    for chunk in chunks:
        CONFORMANCE.chunk("anthropic", "recorded error event", chunk)
    assert joined_text(chunks) == "Hello"
    error = json.loads(data[-1])
    CONFORMANCE.error("anthropic", "recorded error event", error)
    assert "Overloaded" in error["error"]["message"]
    with httpx.Client(base_url=live.url, timeout=30) as h:  # an interrupted answer is never cached
        again = h.post("/v1/chat/completions", json=_ask("Overload after the first word.", stream=True))
    assert again.headers["x-thrifty-cache"] == "miss"


def test_recorded_anthropic_error_event_first(proxies: dict[str, Any], fake: FakeUpstream) -> None:
    """An ``error`` event before any content is a failed attempt: with one candidate, an OpenAI error body."""
    live, _ = proxies["anthropic"]
    fake.script(Reply.transcript("anthropic_error_first"))
    with httpx.Client(base_url=live.url, timeout=30) as h:
        r = h.post("/v1/chat/completions", json=_ask("Overload before the first word.", stream=True))
    assert r.status_code >= 500 and r.headers["content-type"].startswith("application/json"), r.text
    CONFORMANCE.error("anthropic", "recorded error event", r.json())
    assert "Overloaded" in r.json()["error"]["message"]


def test_recorded_cortex_stream(proxies: dict[str, Any], fake: FakeUpstream) -> None:
    """Cortex's own SSE (text deltas, then ``tool_use`` start and input, usage on the last event, no [DONE])."""
    live, _ = proxies["cortex"]
    fake.script(Reply.transcript("cortex_tool_use"))
    body = _ask("Replay the recording cortex_tool_use.", stream_options={"include_usage": True})
    streamed = post_stream(live, "cortex", "recorded cortex_tool_use", body, "miss")
    assert joined_text(streamed) == "I'll help you check Nvidia's current"
    assert joined_calls(streamed) == {0: {"id": "tooluse_FB_nOElDTAOKa-YnVWI5Uw", "name": "get_stock_price",
                                          "arguments": '{"symbol":"NVDA"}'}}
    assert finish_of(streamed) == "tool_calls"
    assert streamed[-1]["usage"]["total_tokens"] == 462
    replay = post_stream(live, "cortex", "recorded cortex_tool_use replay",
                         _ask("Replay the recording cortex_tool_use."), "exact")
    assert joined_calls(replay) == joined_calls(streamed)


@pytest.mark.parametrize(("provider", "name"), [("openai", "openai_parallel_tools"), ("anthropic", "anthropic_tool_use")])
def test_recorded_streams_cut_at_arbitrary_bytes(provider: str, name: str, proxies: dict[str, Any],
                                                 fake: FakeUpstream) -> None:
    """The same recordings delivered 7 bytes at a time: events split mid-line and mid-JSON add up the same."""
    live, _ = proxies[provider]
    fake.script(Reply.transcript(name), Reply.transcript(name, write_size=7))
    whole = post_stream(live, provider, f"recorded {name}", _ask(f"Whole: {name}."), "miss")
    split = post_stream(live, provider, f"recorded {name} (7-byte writes)",
                        _ask(f"Whole: {name}.", thrifty={"namespace": "split-writes"}), "miss")
    assert joined_calls(split) == joined_calls(whole) and joined_text(split) == joined_text(whole)
    assert finish_of(split) == finish_of(whole)


def _texts_by_choice(chunks: list[dict[str, Any]]) -> dict[int, tuple[str, str | None]]:
    out: dict[int, tuple[str, str | None]] = {}
    for c in chunks:
        for choice in c["choices"]:
            text, finish = out.get(choice["index"], ("", None))
            out[choice["index"]] = (text + (choice["delta"].get("content") or ""), choice["finish_reason"] or finish)
    return out


def test_recorded_n3_stream_with_interleaved_choices(proxies: dict[str, Any], fake: FakeUpstream) -> None:
    """``n=3`` as OpenAI streams it, the choices' deltas interleaved: each choice adds up on its own."""
    live, _ = proxies["openai"]
    recorded = recorded_openai("openai_n3_interleaved")
    fake.script(Reply.transcript("openai_n3_interleaved"))
    body = {"model": "gpt-4o-mini", "n": 3, "messages": [{"role": "user", "content": "Weather in SF as JSON, thrice."}]}
    streamed = post_stream(live, "openai", "recorded openai_n3_interleaved", body, "bypass")  # n > 1: not cached
    assert fake.requests[-1].body["n"] == 3
    by_choice = _texts_by_choice(streamed)
    assert by_choice == _texts_by_choice(recorded) and sorted(by_choice) == [0, 1, 2]
    assert all(json.loads(text) and finish == "stop" for text, finish in by_choice.values())
