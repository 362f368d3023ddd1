"""One contract suite, run against every provider module (and an OpenAI-compatible gateway preset)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.fake_upstream import FakeUpstream, Reply
from models.schema import Route
from router.deadline import Deadline
from router.errors import AuthError, BadRequest, ContextLengthExceeded, RateLimited, ServerError
from router.providers.base import ChunkStream, Provider
from router.streaming import ChunkAccumulator
from router.types import (
    ChatRequest,
    ChatResponse,
    FunctionCall,
    FunctionDef,
    Message,
    Tool,
    ToolCall,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

KINDS = ["openai", "openrouter", "anthropic", "cortex", "simulated"]
HTTP_KINDS = [k for k in KINDS if k != "simulated"]
WIRE_FORMAT = {"openai": "openai", "openrouter": "openai", "anthropic": "anthropic", "cortex": "cortex"}
WEATHER = Tool(function=FunctionDef(name="get_weather", description="Weather for a city",
                                    parameters={"type": "object", "properties": {"city": {"type": "string"}},
                                                "required": ["city"]}))
CALL = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city":"Paris"}'))


def chat(stream: bool = False, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content="Be terse."),
                                 Message(role="user", content="What is the answer?")],
                       stream=stream or None, **kw)  # type: ignore[arg-type]


async def send(provider: Provider, request: ChatRequest, model: str = "m-1") -> ChatResponse | ChunkStream:
    return await provider.send(request, Route(provider=provider.name, model=model), Deadline(5))


async def collect(stream: ChatResponse | ChunkStream) -> ChunkAccumulator:
    assert isinstance(stream, ChunkStream)
    acc = ChunkAccumulator()
    async for chunk in stream:
        acc.feed(chunk)
    return acc


@pytest.mark.parametrize("kind", KINDS)
async def test_complete_returns_answer_with_usage(kind: str, make_provider: Callable[..., Provider],
                                                  upstream: FakeUpstream) -> None:
    response = await send(make_provider(kind), chat())
    assert isinstance(response, ChatResponse)
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content
    assert response.usage is not None and response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    if kind != "simulated":
        assert choice.message.content == upstream.answer
        assert len(upstream.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_accumulates_to_the_same_answer(kind: str, make_provider: Callable[..., Provider]) -> None:
    provider = make_provider(kind)
    whole = await send(provider, chat())
    acc = await collect(await send(provider, chat(stream=True)))
    assert isinstance(whole, ChatResponse)
    assert acc.finished
    streamed = acc.response()
    assert streamed.choices[0].message.content == whole.choices[0].message.content
    assert streamed.choices[0].finish_reason == "stop"
    assert streamed.usage == whole.usage


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls_round_trip(kind: str, stream: bool, make_provider: Callable[..., Provider],
                                     upstream: FakeUpstream) -> None:
    upstream.script(Reply(tool_calls=[CALL]))
    sent = await send(make_provider(kind), chat(stream=stream, tools=[WEATHER], tool_choice="auto"))
    response = (await collect(sent)).response() if stream else sent
    assert isinstance(response, ChatResponse)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls == [CALL]


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_system_prompt_and_tools_reach_the_upstream_in_its_wire_format(
        kind: str, make_provider: Callable[..., Provider], upstream: FakeUpstream) -> None:
    await send(make_provider(kind), chat(tools=[WEATHER]))
    body = upstream.requests[0].body
    if WIRE_FORMAT[kind] == "anthropic":
        assert body["system"] == "Be terse."
        assert body["messages"] == [{"role": "user", "content": "What is the answer?"}]
        assert body["tools"][0]["input_schema"] == WEATHER.function.parameters
        assert body["max_tokens"] > 0
    elif WIRE_FORMAT[kind] == "cortex":
        assert body["messages"][0] == {"role": "system", "content": "Be terse."}
        assert body["tools"][0]["tool_spec"]["input_schema"] == WEATHER.function.parameters
        assert body["stream"] is True
    else:
        assert body["messages"][0] == {"role": "system", "content": "Be terse."}
        assert body["tools"][0]["function"]["parameters"] == WEATHER.function.parameters
    assert body["model"] == "m-1"


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_rate_limit_maps_with_retry_after(kind: str, make_provider: Callable[..., Provider],
                                                upstream: FakeUpstream) -> None:
    upstream.script(Reply.error_status(429, "slow down", retry_after=7, fmt=WIRE_FORMAT[kind]))
    with pytest.raises(RateLimited) as info:
        await send(make_provider(kind), chat())
    assert info.value.status == 429 and info.value.retry_after == 7.0
    assert "slow down" in info.value.message


@pytest.mark.parametrize("kind", HTTP_KINDS)
async def test_context_length_error_in_each_wire_shape(kind: str, make_provider: Callable[..., Provider],
                                                       upstream: FakeUpstream) -> None:
    upstream.script(Reply.context_length(WIRE_FORMAT[kind]))
    with pytest.raises(ContextLengthExceeded):
        await send(make_provider(kind), chat())


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize(("status", "error"), [(400, BadRequest), (401, AuthError), (503, ServerError)])
async def test_status_mapping(kind: str, status: int, error: type[Exception],
                              make_provider: Callable[..., Provider], upstream: FakeUpstream) -> None:
    upstream.script(Reply.error_status(status, "nope", fmt=WIRE_FORMAT[kind]))
    with pytest.raises(error, match="nope"):
        await send(make_provider(kind), chat(stream=True))


async def test_simulated_is_always_labeled(make_provider: Callable[..., Provider]) -> None:
    provider = make_provider("simulated")
    response = await send(provider, chat())
    assert isinstance(response, ChatResponse)
    assert response.model == "simulated/m-1" and response.system_fingerprint == "thrifty-simulated"
    assert response.id.startswith("sim-")
    again = await send(provider, chat())
    assert isinstance(again, ChatResponse)
    assert again.choices[0].message.content == response.choices[0].message.content  # deterministic
    acc = await collect(await send(provider, chat(stream=True)))
    assert acc.system_fingerprint == "thrifty-simulated" and acc.model == "simulated/m-1"


async def test_openrouter_preset_headers_and_provider_preferences(make_provider: Callable[..., Provider],
                                                                  upstream: FakeUpstream) -> None:
    await send(make_provider("openrouter"), chat())
    recorded = upstream.requests[0]
    assert recorded.headers["http-referer"] == "https://example.test"
    assert recorded.headers["x-title"] == "thrifty-tests"
    assert recorded.body["provider"] == {"order": ["anthropic"], "allow_fallbacks": False}


async def test_openai_stream_requests_usage(make_provider: Callable[..., Provider], upstream: FakeUpstream) -> None:
    await collect(await send(make_provider("openai"), chat(stream=True)))
    assert upstream.requests[0].body["stream_options"] == {"include_usage": True}


async def test_anthropic_headers(make_provider: Callable[..., Provider], upstream: FakeUpstream,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_TEST_ANTHROPIC_KEY", "sk-ant-test")
    await send(make_provider("anthropic", api_key_env="THRIFTY_TEST_ANTHROPIC_KEY"), chat())
    headers = upstream.requests[0].headers
    assert headers["x-api-key"] == "sk-ant-test" and headers["anthropic-version"] == "2023-06-01"


async def test_cortex_headers(make_provider: Callable[..., Provider], upstream: FakeUpstream,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_TEST_SNOWFLAKE_PAT", "pat-123")
    await send(make_provider("cortex", api_key_env="THRIFTY_TEST_SNOWFLAKE_PAT"), chat())
    recorded = upstream.requests[0]
    assert recorded.path == "/api/v2/cortex/inference:complete"
    assert recorded.headers["authorization"] == "Bearer pat-123"
    assert recorded.headers["x-snowflake-authorization-token-type"] == "PROGRAMMATIC_ACCESS_TOKEN"
