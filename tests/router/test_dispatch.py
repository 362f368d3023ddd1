"""Dispatch details: secrets never leak, breaker mechanics, streaming accumulation, retry timing."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from dispatch_helpers import candidate

from bench.fake_upstream import FakeUpstream, Reply
from router._retry import backoff, retry_delay
from router.breaker import CircuitBreaker
from router.dispatch import Dispatcher
from router.errors import RateLimited, UpstreamError
from router.providers import ProviderConfig, RetryPolicy, parse_retry_after
from router.providers.base import Provider
from router.providers.config import BreakerConfig
from router.streaming import ChunkAccumulator
from router.types import ChatChunk, ChatRequest, ChunkChoice, Delta, FunctionCall, Message, ToolCallDelta

SECRET = "sk-live-THIS-MUST-NEVER-LEAK-1234"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["openai", "anthropic", "cortex"])
async def test_api_key_never_appears_in_errors_reprs_or_attempts(kind: str, upstream: FakeUpstream,
                                                                 make_provider: Callable[..., Provider],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_TEST_SECRET", SECRET)
    provider = make_provider(kind, "p", api_key_env="THRIFTY_TEST_SECRET")
    # An upstream that echoes the key back in its error body (some do).
    upstream.script(Reply.error_status(401, f"Incorrect API key provided: {SECRET}"))
    dispatcher = Dispatcher({"p": provider})
    with pytest.raises(UpstreamError) as info:
        await dispatcher.complete(ChatRequest(messages=[Message(role="user", content="hi")]), [candidate("p", "m")])
    assert SECRET in str(upstream.requests[0].headers)  # it was sent upstream...
    texts = [str(info.value), repr(info.value), info.value.provider_message, repr(provider), repr(provider.config),
             *(repr(a) for a in info.value.attempts), str(info.value.__cause__)]
    assert all(SECRET not in t for t in texts)  # ...and nowhere else
    assert "[redacted]" in info.value.provider_message


def test_breaker_opens_on_failure_rate() -> None:
    breaker = CircuitBreaker(BreakerConfig(consecutive_failures=100, failure_rate=0.5, window=10, min_calls=10),
                             clock=lambda: 0.0)
    for i in range(10):
        (breaker.record_failure if i % 2 else breaker.record_success)()
    assert breaker.state == "open" and not breaker.allow()


def test_half_open_allows_exactly_one_probe() -> None:
    now = [0.0]
    breaker = CircuitBreaker(BreakerConfig(consecutive_failures=1, cooldown=5), clock=lambda: now[0])
    breaker.record_failure()
    assert not breaker.allow()
    now[0] = 6
    assert breaker.allow() and not breaker.allow() and breaker.is_open
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()


def test_retry_timing() -> None:
    policy = RetryPolicy(attempts=3, backoff_base=0.1, backoff_max=1.0, max_retry_after=5)
    rng = random.Random(1)
    assert all(0 <= backoff(r, policy, rng) <= min(1.0, 0.1 * 2**r) for r in range(6) for _ in range(50))
    assert retry_delay(RateLimited("x", retry_after=2.0), 0, policy, rng, remaining=10) == 2.0
    assert retry_delay(RateLimited("x", retry_after=2.0), 0, policy, rng, remaining=1.5) is None
    assert retry_delay(RateLimited("x", retry_after=9.0), 0, policy, rng, remaining=None) is None
    assert parse_retry_after("3") == 3.0 and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_accumulator_joins_tool_call_deltas_and_flags_completion() -> None:
    acc = ChunkAccumulator()

    def chunk(delta: Delta, finish: str | None = None) -> ChatChunk:
        return ChatChunk(id="c", model="m", choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)])

    assert not acc.feed(chunk(Delta(role="assistant", content="")))
    acc.feed(chunk(Delta(tool_calls=[ToolCallDelta(index=0, id="t1", type="function",
                                                   function=FunctionCall(name="f", arguments='{"a"'))])))
    acc.feed(chunk(Delta(tool_calls=[ToolCallDelta(index=0, function=FunctionCall(name="", arguments=":1}"))])))
    assert not acc.finished
    acc.feed(chunk(Delta(), "tool_calls"))
    assert acc.finished
    calls = acc.response().choices[0].message.tool_calls
    assert calls is not None and calls[0].function.arguments == '{"a":1}' and calls[0].id == "t1"


def test_config_repr_holds_the_env_name_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_TEST_SECRET", SECRET)
    config = ProviderConfig(name="p", kind="openai", api_key_env="THRIFTY_TEST_SECRET")
    assert SECRET not in repr(config) and "THRIFTY_TEST_SECRET" in repr(config)
