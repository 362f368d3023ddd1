"""Cost = tokens x catalog price, exact to the cent (Decimal inside)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from dispatch_helpers import candidate

from bench.fake_upstream import FakeUpstream, Reply, usage
from models.schema import Price
from router.cost import cost_of
from router.dispatch import Dispatcher
from router.providers.base import Provider
from router.types import ChatRequest, Message

PRICE = Price(input=2.5, output=10.0, cached_input=1.25)


def chat(stream: bool = False) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="price me")], stream=stream or None)


def test_cost_of_is_exact() -> None:
    # 1,000,000 uncached x 2.5 + 234,567 cached x 1.25 + 345,678 out x 10 (per 1M tokens)
    u = usage(1_234_567, 345_678, cached=234_567, reasoning=100_000)
    expected = Decimal("2.5") + Decimal("234567") * Decimal("1.25") / 10**6 + Decimal("345678") * 10 / 10**6
    assert cost_of(u, PRICE) == expected
    assert round(cost_of(u, PRICE), 2) == Decimal("6.25")  # 2.5 + 0.29320875 + 3.45678


def test_cached_tokens_at_full_price_without_a_cached_price() -> None:
    assert cost_of(usage(1000, 0, cached=400), Price(input=3.0, output=15.0)) == Decimal("0.003")


def test_reasoning_tokens_are_not_double_counted() -> None:
    assert cost_of(usage(0, 1000, reasoning=800), PRICE) == cost_of(usage(0, 1000), PRICE) == Decimal("0.01")


def test_float_prices_do_not_leak_binary_noise() -> None:
    assert cost_of(usage(3, 0), Price(input=0.1, output=0.0)) == Decimal("0.0000003")


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["openai", "anthropic", "cortex"])
@pytest.mark.parametrize("stream", [False, True])
async def test_dispatch_cost_matches_usage_times_price(kind: str, stream: bool, upstream: FakeUpstream,
                                                       make_provider: Callable[..., Provider]) -> None:
    cached = 0 if kind == "cortex" else 2_000  # Cortex reports no cached tokens
    upstream.script(Reply(usage=usage(12_000, 3_456, cached=cached)))
    dispatcher = Dispatcher({"p": make_provider(kind, "p")})
    cand = candidate("p", "m", price=PRICE)
    expected = (Decimal(12_000 - cached) * Decimal("2.5") + Decimal(cached) * Decimal("1.25")
                + Decimal(3_456) * 10) / 10**6
    if stream:
        result = await dispatcher.stream(chat(stream=True), [cand])
        async for _ in result:
            pass
        cost, estimated = result.cost_usd, result.cost_estimated
    else:
        done = await dispatcher.complete(chat(), [cand])
        cost, estimated = done.cost_usd, done.cost_estimated
    assert not estimated
    assert cost is not None and round(Decimal(repr(cost)), 2) == round(expected, 2)
    assert cost == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.anyio
async def test_stream_without_usage_is_estimated(upstream: FakeUpstream, make_provider: Callable[..., Provider]) -> None:
    upstream.script(Reply(include_usage=False))
    dispatcher = Dispatcher({"p": make_provider("openai", "p")})
    result = await dispatcher.stream(chat(stream=True), [candidate("p", "m", price=PRICE)])
    async for _ in result:
        pass
    assert result.complete and result.cost_estimated
    assert result.usage is not None and result.usage.completion_tokens > 0
    assert result.cost_usd is not None and result.cost_usd > 0
