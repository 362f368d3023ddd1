"""What an answer cost: the provider's usage times the route's price per million tokens.

Decimal internally, so totals are exact to the cent and beyond; floats only at the edge. Cached input
tokens are part of prompt_tokens (OpenAI's convention, which the providers translate to) and are
charged at ``cached_input`` when the price has one. Reasoning tokens are already part of
completion_tokens for OpenAI-shaped usage and are not added again.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from models.schema import Price
from models.tokens import estimate_messages, estimate_tokens
from router.types import ChatRequest, ChatResponse, PromptTokensDetails, Usage, text_of

_MILLION = Decimal(1_000_000)


class Cost(msgspec.Struct, frozen=True):
    usd: Decimal
    estimated: bool  # True when usage was counted locally rather than reported by the provider
    usage: Usage

    @property
    def usd_float(self) -> float:
        return float(self.usd)


def _dec(value: float) -> Decimal:
    return Decimal(repr(value))  # the decimal literal the catalog wrote, not the binary float's expansion


def cost_of(usage: Usage, price: Price) -> Decimal:
    """Exact USD for ``usage`` at ``price`` (per 1M tokens)."""
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    cached = min(cached, usage.prompt_tokens)
    uncached = usage.prompt_tokens - cached
    cached_price = price.cached_input if price.cached_input is not None else price.input
    total = (
        uncached * _dec(price.input)
        + cached * _dec(cached_price)
        + usage.completion_tokens * _dec(price.output)
    )
    return total / _MILLION


def estimate_usage(request: ChatRequest, response: ChatResponse) -> Usage:
    """Local token counts, for answers (usually streams) that arrive without usage."""
    prompt = estimate_messages([text_of(m.content) for m in request.messages])
    completion = 0
    for choice in response.choices:
        completion += estimate_tokens(choice.message.content or "")
        for call in choice.message.tool_calls or []:
            completion += estimate_tokens(call.function.name) + estimate_tokens(call.function.arguments)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=0))


def answer_cost(request: ChatRequest, response: ChatResponse, price: Price) -> Cost:
    if response.usage is not None:
        return Cost(usd=cost_of(response.usage, price), estimated=False, usage=response.usage)
    usage = estimate_usage(request, response)
    return Cost(usd=cost_of(usage, price), estimated=True, usage=usage)
