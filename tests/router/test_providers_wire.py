"""Anthropic and Cortex translations round-trip tools, system prompts, images and usage; config is strict."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.errors import ConfigError
from router.providers import PRESETS, ProviderConfig, build_providers, decode_configs
from router.providers.anthropic_wire import (
    StreamTranslator,
    from_anthropic_request,
    from_anthropic_response,
    to_anthropic_events,
    to_anthropic_request,
    to_anthropic_response,
)
from router.providers.config import auth_headers
from router.providers.cortex_wire import from_cortex_request, to_cortex_request
from router.streaming import ChunkAccumulator
from router.types import (
    ChatRequest,
    ChatResponse,
    Choice,
    FunctionCall,
    FunctionDef,
    ImagePart,
    ImageURL,
    Message,
    PromptTokensDetails,
    ResponseMessage,
    TextPart,
    Tool,
    ToolCall,
    Usage,
)

TOOL = Tool(function=FunctionDef(name="lookup", description="Look it up",
                                 parameters={"type": "object", "properties": {"q": {"type": "string"}}}))
CALL = ToolCall(id="toolu_1", function=FunctionCall(name="lookup", arguments='{"q":"tides"}'))


def conversation(system: str = "You are terse.", user: str = "When is high tide?") -> ChatRequest:
    return ChatRequest(
        model="m",
        max_tokens=256,
        messages=[
            Message(role="system", content=system),
            Message(role="user", content=user),
            Message(role="assistant", tool_calls=[CALL]),
            Message(role="tool", tool_call_id="toolu_1", content="06:12 and 18:40"),
            Message(role="user", content="Thanks. And tomorrow?"),
        ],
        tools=[TOOL],
    )


@given(system=st.text(min_size=1, max_size=40), user=st.text(min_size=1, max_size=80))
def test_anthropic_request_round_trip(system: str, user: str) -> None:
    request = conversation(system, user)
    wire = to_anthropic_request(request, "m")
    assert wire["system"] == system and wire["tools"][0]["input_schema"] == TOOL.function.parameters
    assert [m["role"] for m in wire["messages"]] == ["user", "assistant", "user"]  # tool result merged into a user turn
    back = from_anthropic_request(msgspec.json.decode(msgspec.json.encode(wire)))
    assert back.messages == request.messages
    assert back.tools == request.tools and back.max_tokens == 256


def test_anthropic_images_base64_and_url() -> None:
    request = ChatRequest(messages=[Message(role="user", content=[
        TextPart(text="what is this?"),
        ImagePart(image_url=ImageURL(url="data:image/png;base64,iVBORw0KGgo=")),
        ImagePart(image_url=ImageURL(url="https://example.test/cat.jpg")),
    ])])
    wire = to_anthropic_request(request, "m")
    blocks = wire["messages"][0]["content"]
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.test/cat.jpg"}
    assert from_anthropic_request(wire).messages == request.messages


@pytest.mark.parametrize(("finish", "stop"), [("stop", "end_turn"), ("length", "max_tokens"),
                                              ("tool_calls", "tool_use")])
def test_anthropic_response_round_trip_with_cache_usage(finish: str, stop: str) -> None:
    usage = Usage(prompt_tokens=1500, completion_tokens=70, total_tokens=1570,
                  prompt_tokens_details=PromptTokensDetails(cached_tokens=1000))
    response = ChatResponse(id="msg_1", model="claude", usage=usage, choices=[Choice(
        index=0, finish_reason=finish,
        message=ResponseMessage(content="Checking.", tool_calls=[CALL] if finish == "tool_calls" else None))])
    wire = to_anthropic_response(response)
    assert wire["stop_reason"] == stop
    assert wire["usage"] == {"input_tokens": 500, "output_tokens": 70, "cache_read_input_tokens": 1000}
    assert from_anthropic_response(wire) == response
    # and the same answer as a stream of Anthropic events
    translator, acc = StreamTranslator(), ChunkAccumulator()
    for event in to_anthropic_events(response, ["Check", "ing."]):
        chunk = translator.feed(msgspec.json.decode(msgspec.json.encode(event)))
        if chunk is not None:
            acc.feed(chunk)
    assert translator.done and acc.response().choices == response.choices and acc.usage == usage


def test_anthropic_stop_sequence_and_cache_creation() -> None:
    wire = {"id": "m", "model": "c", "content": [{"type": "text", "text": "x"}], "stop_reason": "stop_sequence",
            "usage": {"input_tokens": 10, "output_tokens": 2, "cache_creation_input_tokens": 5,
                      "cache_read_input_tokens": 3}}
    response = from_anthropic_response(wire)
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.prompt_tokens == 18  # input + cache write + cache read


def test_cortex_request_round_trip() -> None:
    request = conversation()
    wire = to_cortex_request(request, "m", stream=True)
    assert wire["messages"][0] == {"role": "system", "content": "You are terse."}
    assert wire["tools"][0] == {"tool_spec": {"type": "generic", "name": "lookup", "description": "Look it up",
                                              "input_schema": TOOL.function.parameters}}
    result = wire["messages"][3]["content_list"][0]
    assert result["type"] == "tool_results" and result["tool_results"]["name"] == "lookup"
    back = from_cortex_request(msgspec.json.decode(msgspec.json.encode(wire)))
    expected = [m if m.role != "tool" else msgspec.structs.replace(m, name="lookup") for m in request.messages]
    assert back.messages == expected and back.tools == request.tools and back.max_tokens == 256


# ------------------------------------------------------------------------------------------ config
def test_unknown_config_key_is_named() -> None:
    with pytest.raises(ConfigError, match="api_keyenv"):
        decode_configs(b'[{"name": "x", "kind": "openai", "api_keyenv": "K"}]', source="thrifty.yaml")


def test_missing_key_env_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="THRIFTY_SURELY_UNSET"):
        build_providers([ProviderConfig(name="x", kind="openai", api_key_env="THRIFTY_SURELY_UNSET")])


def test_presets_are_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELICONE_API_KEY", "hk")
    helicone = auth_headers(ProviderConfig(name="h", kind="openai-compatible", preset="helicone"), "sk")
    assert helicone == {"Authorization": "Bearer sk", "Helicone-Auth": "Bearer hk"}
    portkey = auth_headers(ProviderConfig(name="p", kind="openai-compatible", preset="portkey",
                                          params={"virtual_key": "vk-1"}), "pk")
    assert portkey == {"x-portkey-api-key": "pk", "x-portkey-virtual-key": "vk-1"}  # no provider param: omitted
    assert set(PRESETS) == {"openrouter", "portkey", "together", "helicone", "vllm", "ollama", "llamacpp",
                            "baseten", "modal"}
