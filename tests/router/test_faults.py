"""Fault injection against the loopback fake upstream: one block per row of DESIGN.md's semantics table.

Every request must end in a correct answer or a clear error naming every attempt; no request may
outlive its deadline (plus scheduling slack); no truncated stream may be reported complete.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import pytest
from dispatch_helpers import candidate

from bench.fake_upstream import FakeUpstream, Reply
from router.breaker import Breakers
from router.deadline import Deadline
from router.dispatch import Dispatcher
from router.errors import (
    AllAttemptsFailed,
    DeadlineExceeded,
    StreamInterrupted,
    UpstreamError,
)
from router.providers.base import Provider
from router.providers.config import BreakerConfig
from router.types import ChatRequest, Message

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(15)]
SLACK = 0.25  # seconds of scheduling slack over a deadline, on a loaded 2-core machine
ANSWER = "Hello from the fake upstream. The answer is 42."


def chat(stream: bool = False) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="What is the answer?")], stream=stream or None)


@pytest.fixture
def two(make_provider: Callable[..., Provider]) -> Dispatcher:
    """Two OpenAI-format providers on the same fake upstream: a primary and a fallback."""
    return Dispatcher({"a": make_provider("openai", "a"), "b": make_provider("openai", "b")})


A, B = candidate("a", "model-a"), candidate("b", "model-b")


def deployments(attempts: list) -> list[tuple[str, str | None]]:
    return [(a.deployment, a.kind) for a in attempts]


# ---------------------------------------------------------------- row 1: transient errors: retry, then fall back
@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_transient_status_is_retried_on_the_same_deployment(status: int, two: Dispatcher,
                                                                  upstream: FakeUpstream) -> None:
    upstream.script(Reply.error_status(status), Reply.error_status(status), model="model-a")
    result = await two.complete(chat(), [A, B])
    assert result.response.choices[0].message.content == ANSWER
    assert result.candidate is A
    kind = "rate_limit" if status == 429 else "server"
    assert deployments(result.attempts) == [("a/model-a", kind), ("a/model-a", kind), ("a/model-a", None)]
    assert [a.status for a in result.attempts[:2]] == [status, status]


async def test_persistent_5xx_falls_back_to_the_next_candidate(two: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(*[Reply.error_status(503, "overloaded")] * 3, model="model-a")
    result = await two.complete(chat(), [A, B])
    assert result.candidate is B and result.response.choices[0].message.content == ANSWER
    assert deployments(result.attempts) == [("a/model-a", "server")] * 3 + [("b/model-b", None)]
    assert all("overloaded" in (a.error or "") for a in result.attempts[:3])


async def test_retry_after_seconds_is_honoured(two: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply.error_status(429, retry_after=0.3), model="model-a")
    started = time.perf_counter()
    result = await two.complete(chat(), [A, B])
    assert time.perf_counter() - started >= 0.3
    assert result.candidate is A


async def test_retry_after_http_date_is_honoured(two: Dispatcher, upstream: FakeUpstream) -> None:
    when = email.utils.formatdate(time.time() + 1.2, usegmt=True)  # 1 s resolution: between 0.2 and 1.2 s
    upstream.script(Reply.error_status(503, retry_after=when), model="model-a")
    started = time.perf_counter()
    result = await two.complete(chat(), [A, B])
    assert time.perf_counter() - started >= 0.15
    assert result.candidate is A


async def test_retry_after_beyond_policy_or_deadline_falls_back_at_once(two: Dispatcher,
                                                                        upstream: FakeUpstream) -> None:
    upstream.script(Reply.error_status(429, retry_after=60), model="model-a")
    started = time.perf_counter()
    result = await two.complete(chat(), [A, B], Deadline(5))
    assert time.perf_counter() - started < 1.0
    assert deployments(result.attempts) == [("a/model-a", "rate_limit"), ("b/model-b", None)]


async def test_connect_error_is_retried_then_falls_back(make_provider: Callable[..., Provider]) -> None:
    dead = make_provider("openai", "dead", base_url="http://127.0.0.1:9/v1")  # discard port: refused
    dispatcher = Dispatcher({"dead": dead, "b": make_provider("openai", "b")})
    result = await dispatcher.complete(chat(), [candidate("dead", "x"), B])
    assert result.candidate is B
    kinds = [a.kind for a in result.attempts[:3]]
    assert len(kinds) == 3 and set(kinds) <= {"connect", "timeout"}


async def test_read_timeout_falls_back_at_once(two: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(*[Reply(delay=1.5)] * 3, model="model-a")  # read timeout is 1 s
    started = time.perf_counter()
    result = await two.complete(chat(), [A, B], Deadline(10))
    assert result.candidate is B
    assert [a.kind for a in result.attempts] == ["timeout", None]  # not retried: one timeout, then b
    assert time.perf_counter() - started < 1.0 + 1.0
    assert [r.body["model"] for r in upstream.requests] == ["model-a", "model-b"]


async def test_read_timeout_is_retried_when_the_provider_says_so(make_provider: Callable[..., Provider],
                                                                 upstream: FakeUpstream) -> None:
    retries = {"attempts": 3, "backoff_base": 0.001, "backoff_max": 0.005, "retry_on_timeout": True}
    dispatcher = Dispatcher({"a": make_provider("openai", "a", retries=retries), "b": make_provider("openai", "b")})
    upstream.script(*[Reply(delay=1.5)] * 3, model="model-a")
    result = await dispatcher.complete(chat(), [A, B], Deadline(10))
    assert result.candidate is B
    assert [a.kind for a in result.attempts] == ["timeout"] * 3 + [None]


@pytest.mark.parametrize(("reply", "why"), [
    (Reply(body=b'{"id": "x", "choices": [ {"message": '), "undecodable"),
    (Reply(content_type="text/html"), "content-type"),
    (Reply(oversized=17 * 1024 * 1024), "limit"),
])
async def test_malformed_bodies_are_failed_attempts(reply: Reply, why: str, two: Dispatcher,
                                                    upstream: FakeUpstream) -> None:
    upstream.script(reply, reply, reply, model="model-a")
    result = await two.complete(chat(), [A, B])
    assert result.candidate is B
    assert all(a.kind == "malformed" and why in (a.error or "") for a in result.attempts[:3])


# ---------------------------------------------------------------- row 2: context length: larger window, no retry
@pytest.mark.parametrize("fmt", ["openai", "anthropic", "cortex"])
async def test_context_length_skips_to_a_larger_window(fmt: str, make_provider: Callable[..., Provider],
                                                       upstream: FakeUpstream) -> None:
    kind = {"openai": "openai", "anthropic": "anthropic", "cortex": "cortex"}[fmt]
    dispatcher = Dispatcher({"p": make_provider(kind, "p")})
    small = candidate("p", "small", window=8_000)
    same = candidate("p", "same", window=8_000)
    large = candidate("p", "large", window=200_000)
    upstream.script(Reply.context_length(fmt), model="small")
    result = await dispatcher.complete(chat(), [small, same, large])
    assert result.candidate is large
    assert deployments(result.attempts) == [("p/small", "context_length"), ("p/same", "skipped"), ("p/large", None)]
    assert [r.body["model"] for r in upstream.requests] == ["small", "large"]  # no retry, no 'same'


async def test_context_length_with_no_larger_window_fails_listing_attempts(two: Dispatcher,
                                                                           upstream: FakeUpstream) -> None:
    upstream.script(Reply.context_length("openai"), model="model-a")
    with pytest.raises(AllAttemptsFailed) as info:
        await two.complete(chat(), [A, B])
    assert deployments(info.value.attempts) == [("a/model-a", "context_length"), ("b/model-b", "skipped")]
    assert "maximum context length" in str(info.value)


# ---------------------------------------------------------------- row 3: the caller's mistakes: fail at once
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
@pytest.mark.parametrize("stream", [False, True])
async def test_caller_errors_fail_at_once_without_fallback(status: int, stream: bool, two: Dispatcher,
                                                           upstream: FakeUpstream) -> None:
    upstream.script(Reply.error_status(status, f"bad thing {status}"), model="model-a")
    with pytest.raises(UpstreamError) as info:
        if stream:
            await two.stream(chat(stream=True), [A, B])
        else:
            await two.complete(chat(), [A, B])
    assert info.value.status == status and f"bad thing {status}" in str(info.value)
    assert len(info.value.attempts) == 1 and len(upstream.requests) == 1


# ---------------------------------------------------------------- row 4: circuit breaker
async def test_breaker_opens_then_half_open_probe_closes_it(make_provider: Callable[..., Provider],
                                                            upstream: FakeUpstream) -> None:
    now = [1000.0]
    breakers = Breakers(default=BreakerConfig(consecutive_failures=3, cooldown=30.0), clock=lambda: now[0])
    dispatcher = Dispatcher({"a": make_provider("openai", "a"), "b": make_provider("openai", "b")}, breakers)
    upstream.script(*[Reply.error_status(500)] * 3, model="model-a")
    await dispatcher.complete(chat(), [A, B])  # one request, three tries: ONE failure on a's record
    assert not dispatcher.is_open("a/model-a")
    upstream.script(*[Reply.error_status(500)] * 4, model="model-a")
    await dispatcher.complete(chat(), [A, B])
    result = await dispatcher.complete(chat(), [A, B])  # the third request's failure opens a's circuit
    assert deployments(result.attempts) == [("a/model-a", "server"), ("a/model-a", "circuit_open"), ("b/model-b", None)]
    assert dispatcher.is_open("a/model-a") and not dispatcher.is_open("b/model-b")
    upstream.requests.clear()
    result = await dispatcher.complete(chat(), [A, B])
    assert deployments(result.attempts) == [("a/model-a", "circuit_open"), ("b/model-b", None)]
    assert [r.body["model"] for r in upstream.requests] == ["model-b"]  # a was not called at all
    now[0] += 31  # cool-down over: one half-open probe
    assert not dispatcher.is_open("a/model-a")
    result = await dispatcher.complete(chat(), [A, B])
    assert result.candidate is A and breakers.states()["a/model-a"] == "closed"


async def test_failed_half_open_probe_reopens(make_provider: Callable[..., Provider], upstream: FakeUpstream) -> None:
    now = [0.0]
    breakers = Breakers(default=BreakerConfig(consecutive_failures=1, cooldown=10.0), clock=lambda: now[0])
    dispatcher = Dispatcher({"a": make_provider("openai", "a"), "b": make_provider("openai", "b")}, breakers)
    upstream.script(Reply.error_status(500), model="model-a")
    await dispatcher.complete(chat(), [A, B])
    now[0] = 11
    upstream.script(Reply.error_status(500), model="model-a")
    result = await dispatcher.complete(chat(), [A, B])
    # the probe failed: no retry on an unproven deployment, and the circuit is open again
    assert deployments(result.attempts) == [("a/model-a", "server"), ("a/model-a", "circuit_open"), ("b/model-b", None)]
    assert dispatcher.is_open("a/model-a")


# ---------------------------------------------------------------- row 5: stream fails before its first content chunk
@pytest.mark.parametrize(("fault", "tries"), [
    (Reply.error_status(503), 3),
    (Reply(cut_after=1), 3),  # only the role chunk, then the connection drops
    (Reply(stall_after=1, stall_for=5), 1),  # silent after the role chunk: the TTFT limit (0.5 s) fires
    (Reply(delay=2.0), 1),  # no status line within TTFT: a timeout falls back at once
    (Reply(content_type="application/json"), 3),
])
async def test_stream_failing_before_content_is_retried_or_falls_back(fault: Reply, tries: int, two: Dispatcher,
                                                                      upstream: FakeUpstream) -> None:
    upstream.script(fault, fault, fault, model="model-a")
    started = time.perf_counter()
    result = await two.stream(chat(stream=True), [A, B], Deadline(8))
    chunks = [c async for c in result]
    assert result.candidate is B and result.complete and result.cacheable
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert result.response.choices[0].message.content == ANSWER
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1  # one role chunk, not two
    assert [a.deployment for a in result.attempts] == ["a/model-a"] * tries + ["b/model-b"]
    assert time.perf_counter() - started < 8


# ---------------------------------------------------------------- row 6: stream fails after content was sent
@pytest.mark.parametrize(("fault", "kind"), [
    (Reply(cut_after=3), {"connect", "timeout"}),
    (Reply(stall_after=3, stall_for=5), {"stall"}),
    (Reply(no_finish=True, no_done=True), {"incomplete"}),
])
async def test_stream_failing_after_content_ends_with_an_explicit_error(fault: Reply, kind: set[str],
                                                                        two: Dispatcher, upstream: FakeUpstream) -> None:
    """No candidate left to continue the answer (tests/router/test_recovery.py covers the fallbacks)."""
    upstream.script(fault, model="model-a")
    result = await two.stream(chat(stream=True), [A])
    received = []
    started = time.perf_counter()
    with pytest.raises(StreamInterrupted) as info:
        async for chunk in result:
            received.append(chunk)
    assert time.perf_counter() - started < 0.3 + 1.0  # stall timeout 0.3 s; never a hang
    assert received, "partial chunks reach the caller before the error"
    assert not result.complete and not result.cacheable
    assert result.error is not None and result.error.kind in kind  # type: ignore[attr-defined]
    assert info.value.attempts[-1].kind in kind and "after content was sent" in (info.value.attempts[-1].error or "")
    assert [r.body["model"] for r in upstream.requests] == ["model-a"]  # no silent fallback mid-answer
    assert result.cost_estimated or result.usage is not None


async def test_anthropic_stream_cut_after_content(make_provider: Callable[..., Provider],
                                                  upstream: FakeUpstream) -> None:
    dispatcher = Dispatcher({"an": make_provider("anthropic", "an")})
    upstream.script(Reply(cut_after=4))
    result = await dispatcher.stream(chat(stream=True), [candidate("an", "claude")])
    with pytest.raises(StreamInterrupted):
        async for _ in result:
            pass
    assert not result.complete and not result.cacheable


async def test_complete_stream_is_complete_and_cacheable(two: Dispatcher) -> None:
    result = await two.stream(chat(stream=True), [A, B])
    async for _ in result:
        pass
    assert result.complete and result.cacheable and result.error is None
    assert result.response.choices[0].finish_reason == "stop" and not result.cost_estimated


async def test_length_finish_is_complete_but_not_cacheable(two: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply(finish_reason="length"), model="model-a")
    result = await two.stream(chat(stream=True), [A, B])
    async for _ in result:
        pass
    assert result.complete and not result.cacheable


# ---------------------------------------------------------------- row 7: total deadline
@pytest.mark.parametrize("stream", [False, True])
async def test_total_deadline_fails_listing_every_attempt(stream: bool, two: Dispatcher,
                                                          upstream: FakeUpstream) -> None:
    upstream.script(*[Reply(delay=3)] * 5, model="model-a")
    upstream.script(*[Reply(delay=3)] * 5, model="model-b")
    deadline = Deadline(0.8)  # a's timeout (TTFT 0.5 s, or the deadline) leaves b too little time
    started = time.perf_counter()
    with pytest.raises(DeadlineExceeded) as info:
        if stream:
            await two.stream(chat(stream=True), [A, B], deadline)
        else:
            await two.complete(chat(), [A, B], deadline)
    elapsed = time.perf_counter() - started
    assert elapsed <= 0.8 + SLACK
    assert len(info.value.attempts) >= 2
    assert {a.kind for a in info.value.attempts} <= {"timeout", "deadline"}
    assert info.value.attempts[-1].deployment == "b/model-b"  # named even though never reached
    assert "a/model-a" in str(info.value) and "b/model-b" in str(info.value)


async def test_no_candidates_is_a_clear_error(two: Dispatcher) -> None:
    with pytest.raises(AllAttemptsFailed, match="no candidates"):
        await two.complete(chat(), [])


async def test_unknown_provider_is_named(two: Dispatcher) -> None:
    with pytest.raises(AllAttemptsFailed, match="no provider named 'nowhere'"):
        await two.complete(chat(), [candidate("nowhere", "m")])
