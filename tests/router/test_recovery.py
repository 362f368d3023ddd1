"""Dispatch that recovers (issue 13): a fault suite against a real misbehaving upstream on 127.0.0.1.

Each test scripts the fake upstream (bench/fake_upstream.py) to misbehave the way providers do and asserts
what the caller receives: the text (whole, once, in order) or an explicit error, how long it took, how many
attempts each deployment got, and the tokens and cost accounted. Timeouts are scaled down
(dispatch_helpers.FAST_TIMEOUTS: TTFT 0.5 s, stall 0.3 s, read 1 s) so the suite runs in seconds.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Callable

import pytest
from dispatch_helpers import FAST_TIMEOUTS

from bench.fake_upstream import FakeUpstream, Reply
from models.schema import Capabilities, ModelEntry, Price, Route
from models.tokens import estimate_messages, estimate_tokens
from router.breaker import Breakers
from router.candidate import Candidate
from router.cost import cost_of
from router.deadline import Deadline
from router.dispatch import Dispatcher
from router.errors import AllAttemptsFailed, CircuitsOpen, StreamInterrupted, UpstreamError
from router.providers.base import Provider
from router.providers.config import BreakerConfig
from router.streaming import StreamResult
from router.types import ChatChunk, ChatRequest, FunctionCall, Message, ToolCall

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]
SLACK = 0.6  # seconds of scheduling slack on a loaded 2-core machine
TOKENS = [f"tok{i:02d} " for i in range(60)]  # 60 tokens of 6 characters: the fake sends 12-character pieces
FULL = "".join(TOKENS)
CUT_AT_40 = 1 + 20  # the role chunk, then 20 pieces of two tokens each: 40 of the 60 tokens were sent


def cand(provider: str, model: str, *, window: int = 8192, prefill: bool = False) -> Candidate:
    entry = ModelEntry(id=model, vendor="test", price=Price(input=1.0, output=2.0), context_window=window,
                       max_output=1024, routes=(Route(provider=provider, model=model),),
                       capabilities=Capabilities(assistant_prefill=prefill))
    return Candidate(model=entry, route=entry.routes[0])


A, B, C = cand("a", "model-a"), cand("b", "model-b"), cand("c", "model-c")
B_PREFILL = cand("b", "model-b", prefill=True)


def chat(stream: bool = True) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="Count for me, please.")], stream=stream or None)


@pytest.fixture
def bad_events() -> list[tuple[str, int]]:
    return []


@pytest.fixture
def three(make_provider: Callable[..., Provider], bad_events: list[tuple[str, int]]) -> Dispatcher:
    providers = {n: make_provider("openai", n) for n in "abc"}
    return Dispatcher(providers, on_bad_events=lambda d, n: bad_events.append((d, n)))


async def drain(result: StreamResult) -> tuple[str, list[ChatChunk], BaseException | None]:
    chunks: list[ChatChunk] = []
    error: BaseException | None = None
    try:
        async for chunk in result:
            chunks.append(chunk)
    except StreamInterrupted as exc:
        error = exc
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks, error


def per_deployment(upstream: FakeUpstream) -> Counter[str]:
    return Counter(str(r.body["model"]) for r in upstream.requests)


def kinds(result: StreamResult) -> list[tuple[str, str | None]]:
    return [(a.deployment, a.kind) for a in result.attempts]


# ------------------------------------------------------------------------ 1. a finished stream is finished
async def test_missing_sentinel_with_finish_reason_is_complete(three: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, no_done=True), model="model-a")
    result = await three.stream(chat(), [A, B])
    text, _, error = await drain(result)
    assert error is None and text == FULL
    assert result.complete and result.cacheable and not result.cost_estimated  # usage came before the close
    assert kinds(result) == [("a/model-a", None)] and per_deployment(upstream) == {"model-a": 1}


async def test_anthropic_stream_without_message_stop_is_complete(make_provider: Callable[..., Provider],
                                                                 upstream: FakeUpstream) -> None:
    dispatcher = Dispatcher({"an": make_provider("anthropic", "an")})
    upstream.script(Reply(text=FULL, no_done=True))
    result = await dispatcher.stream(chat(), [cand("an", "claude")])
    text, _, error = await drain(result)
    assert error is None and text == FULL and result.complete


async def test_no_finish_reason_is_incomplete(three: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, no_finish=True, no_done=True), model="model-a")
    result = await three.stream(chat(), [A])
    text, _, error = await drain(result)
    assert isinstance(error, StreamInterrupted) and text == FULL and not result.complete
    assert result.error is not None and result.error.kind == "incomplete"  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ 2. timeouts fail over
async def test_silent_accept_falls_back_within_one_timeout(three: Dispatcher, upstream: FakeUpstream) -> None:
    """Never answers: the fallback's answer within one TTFT timeout (0.5 s) plus the fallback's latency."""
    upstream.script(Reply(delay=10), model="model-a")
    started = time.perf_counter()
    result = await three.stream(chat(), [A, B], Deadline(20))
    text, _, error = await drain(result)
    elapsed = time.perf_counter() - started
    assert error is None and text == upstream.answer and result.candidate is B and result.complete
    assert kinds(result) == [("a/model-a", "timeout"), ("b/model-b", None)]
    assert per_deployment(upstream) == {"model-a": 1, "model-b": 1}
    assert elapsed < FAST_TIMEOUTS.ttft + SLACK  # type: ignore[operator]


async def test_silent_accept_non_streaming_falls_back_after_one_read_timeout(three: Dispatcher,
                                                                             upstream: FakeUpstream) -> None:
    upstream.script(Reply(delay=10), model="model-a")
    started = time.perf_counter()
    result = await three.complete(chat(stream=False), [A, B], Deadline(20))
    assert result.candidate is B and [a.kind for a in result.attempts] == ["timeout", None]
    assert time.perf_counter() - started < FAST_TIMEOUTS.read + SLACK


async def test_slow_first_token_falls_back(three: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, stall_after=1, stall_for=10), model="model-a")  # role chunk, then silence
    result = await three.stream(chat(), [A, B], Deadline(20))
    text, _, error = await drain(result)
    assert error is None and text == upstream.answer and result.candidate is B
    assert kinds(result) == [("a/model-a", "timeout"), ("b/model-b", None)]


async def test_callers_ttft_shortens_the_operators(three: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply(delay=0.45), model="model-a")  # within the provider's 0.5 s, not the caller's 0.15 s
    started = time.perf_counter()
    result = await three.stream(chat(), [A, B], Deadline(20, ttft=0.15))
    await drain(result)
    assert result.candidate is B and time.perf_counter() - started < 0.45
    assert "0.150 s" in (result.attempts[0].error or "")


async def test_callers_ttft_cannot_lengthen_the_operators(three: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply(delay=2), model="model-a")
    result = await three.stream(chat(), [A, B], Deadline(20, ttft=10))
    await drain(result)
    assert result.candidate is B and "0.500 s" in (result.attempts[0].error or "")


async def test_connect_errors_and_5xx_keep_their_retries(three: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply.error_status(503), Reply.error_status(429), model="model-a")
    result = await three.stream(chat(), [A, B])
    await drain(result)
    assert kinds(result) == [("a/model-a", "server"), ("a/model-a", "rate_limit"), ("a/model-a", None)]


# ------------------------------------------------------------------------ 3. mid-stream recovery
@pytest.mark.parametrize("prefill", [True, False])
async def test_cut_after_40_of_60_tokens_gives_all_60_once_in_order(prefill: bool, three: Dispatcher,
                                                                    upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, cut_after=CUT_AT_40), model="model-a")
    upstream.script(Reply(text=FULL, continues=True), model="model-b")
    fallback = B_PREFILL if prefill else B
    result = await three.stream(chat(), [A, fallback])
    text, chunks, error = await drain(result)
    assert error is None and text == FULL  # all 60 tokens, once, in order
    assert result.complete and result.continued and not result.cacheable
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1  # one role chunk
    assert {c.id for c in chunks} == {chunks[0].id}  # the continuation reads as the same stream
    assert kinds(result) == [("a/model-a", None), ("a/model-a", "connect"), ("b/model-b", "continuation")]
    assert per_deployment(upstream) == {"model-a": 1, "model-b": 1}
    sent = "".join(TOKENS[:40])
    last = upstream.requests[1].body["messages"]
    if prefill:
        assert last[-1] == {"role": "assistant", "content": sent.rstrip()}
    else:
        assert last[-2] == {"role": "assistant", "content": sent} and last[-1]["role"] == "user"
    # Both attempts are accounted: a's 40 tokens (estimated: its usage never came) and b's reported 20.
    b_prompt = 8 + 4 * len(last)  # what the fake reports for b's request
    a_prompt = estimate_messages(["Count for me, please."])
    assert result.usage is not None and result.cost_estimated
    assert result.usage.completion_tokens == estimate_tokens(sent) + 20
    assert result.usage.prompt_tokens == a_prompt + b_prompt
    assert result.cost_usd == float(cost_of(result.usage, A.price))  # both priced 1 / 2 USD per M


async def test_cut_inside_an_event_is_continued(three: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, cut_after=CUT_AT_40, cut_mid=True), model="model-a")
    upstream.script(Reply(text=FULL, continues=True), model="model-b")
    result = await three.stream(chat(), [A, B])
    text, _, error = await drain(result)
    assert error is None and text == FULL and result.complete


async def test_stall_after_content_is_continued_within_the_stall_limit(three: Dispatcher,
                                                                        upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, stall_after=11, stall_for=10), model="model-a")
    upstream.script(Reply(text=FULL, continues=True), model="model-b")
    started = time.perf_counter()
    result = await three.stream(chat(), [A, B])
    text, _, error = await drain(result)
    assert error is None and text == FULL
    assert kinds(result)[1:] == [("a/model-a", "stall"), ("b/model-b", "continuation")]
    assert time.perf_counter() - started < FAST_TIMEOUTS.stall + SLACK  # type: ignore[operator]


async def test_a_repeated_seam_is_trimmed(three: Dispatcher, upstream: FakeUpstream) -> None:
    """A model told to continue often restarts the last words: the repeat is not sent twice."""
    upstream.script(Reply(text=FULL, cut_after=CUT_AT_40), model="model-a")
    upstream.script(Reply(text=FULL, continues=True, overlap=9), model="model-b")
    result = await three.stream(chat(), [A, B])
    text, _, error = await drain(result)
    assert error is None and text == FULL


async def test_fallback_rejecting_prefill_never_hides_the_original_error(three: Dispatcher,
                                                                        upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, cut_after=CUT_AT_40), model="model-a")
    upstream.script(Reply(text=FULL, continues=True, reject_prefill=True), model="model-b")
    result = await three.stream(chat(), [A, B_PREFILL])
    text, _, error = await drain(result)
    assert isinstance(error, StreamInterrupted) and text == "".join(TOKENS[:40])
    assert error.__cause__ is result.error and result.error.kind == "connect"  # type: ignore[attr-defined]
    assert kinds(result)[1:] == [("a/model-a", "connect"), ("b/model-b", "bad_request")]
    assert "continuation" in (result.attempts[-1].error or "") and "prefill" in (result.attempts[-1].error or "")
    assert not result.complete and result.usage is not None and result.usage.completion_tokens > 0


async def test_prefill_rejected_then_the_next_candidate_continues(three: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, cut_after=CUT_AT_40), model="model-a")
    upstream.script(Reply(text=FULL, continues=True, reject_prefill=True), model="model-b")
    upstream.script(Reply(text=FULL, continues=True), model="model-c")
    result = await three.stream(chat(), [A, B_PREFILL, C])
    text, _, error = await drain(result)
    assert error is None and text == FULL
    assert kinds(result)[1:] == [("a/model-a", "connect"), ("b/model-b", "bad_request"), ("c/model-c", "continuation")]


async def test_fallback_with_a_smaller_window_is_skipped(three: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, cut_after=CUT_AT_40), model="model-a")
    small = cand("b", "model-b", window=60)  # the prompt and 40 tokens sent do not fit
    result = await three.stream(chat(), [A, small])
    _, _, error = await drain(result)
    assert isinstance(error, StreamInterrupted) and result.error.kind == "connect"  # type: ignore[attr-defined]
    assert kinds(result)[-1] == ("b/model-b", "skipped") and "window 60" in (result.attempts[-1].error or "")
    assert per_deployment(upstream) == {"model-a": 1}


async def test_fallback_reporting_context_length_keeps_the_original_error(three: Dispatcher,
                                                                         upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, cut_after=CUT_AT_40), model="model-a")
    upstream.script(Reply.context_length(), model="model-b")
    result = await three.stream(chat(), [A, B])
    _, _, error = await drain(result)
    assert isinstance(error, StreamInterrupted) and result.error.kind == "connect"  # type: ignore[attr-defined]
    assert kinds(result)[-1] == ("b/model-b", "context_length")


async def test_tool_call_cut_mid_arguments_is_not_continued(three: Dispatcher, upstream: FakeUpstream) -> None:
    call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    upstream.script(Reply(tool_calls=[call], cut_after=2), model="model-a")
    result = await three.stream(chat(), [A, B])
    _, _, error = await drain(result)
    assert isinstance(error, StreamInterrupted) and not result.complete
    assert per_deployment(upstream) == {"model-a": 1}  # no fallback asked to resume half a JSON


# ------------------------------------------------------------------------ 4. a bad event is skipped
async def test_one_malformed_event_is_skipped_and_counted(three: Dispatcher, upstream: FakeUpstream,
                                                          bad_events: list[tuple[str, int]]) -> None:
    upstream.script(Reply(text=FULL, bad_events=(5,)), model="model-a")
    result = await three.stream(chat(), [A, B])
    text, _, error = await drain(result)
    assert error is None and text == FULL and result.complete and not result.continued
    assert bad_events == [("a/model-a", 1)]


async def test_too_many_malformed_events_fail_the_stream(three: Dispatcher, upstream: FakeUpstream,
                                                         bad_events: list[tuple[str, int]]) -> None:
    upstream.script(Reply(text=FULL, bad_events=(3, 4, 5)), model="model-a")  # the limit is 2 per stream
    result = await three.stream(chat(), [A])
    _, _, error = await drain(result)
    assert isinstance(error, StreamInterrupted) and result.error.kind == "malformed"  # type: ignore[attr-defined]
    assert bad_events == [("a/model-a", 3)]


# ------------------------------------------------------------------------ 5. errors keep their meaning
async def test_provider_code_type_and_param_pass_through(three: Dispatcher, upstream: FakeUpstream) -> None:
    body = {"error": {"message": "Your request was rejected by the safety system.", "type": "invalid_request_error",
                      "param": "messages", "code": "content_policy_violation"}}
    upstream.script(Reply(status=400, error=body), model="model-a")
    with pytest.raises(UpstreamError) as info:
        await three.complete(chat(stream=False), [A, B])
    assert (info.value.code, info.value.type, info.value.param) == (
        "content_policy_violation", "invalid_request_error", "messages")


# ------------------------------------------------------------------------ circuits: request errors vs health
async def test_rejected_prompts_never_open_a_circuit(make_provider: Callable[..., Provider],
                                                     upstream: FakeUpstream) -> None:
    breakers = Breakers(default=BreakerConfig(consecutive_failures=2, cooldown=30))
    dispatcher = Dispatcher({"a": make_provider("openai", "a")}, breakers)
    for _ in range(5):
        upstream.script(Reply.error_status(400, "content policy"), model="model-a")
        with pytest.raises(UpstreamError):
            await dispatcher.complete(chat(stream=False), [A])
    assert breakers.states()["a/model-a"] == "closed"


async def test_every_circuit_open_is_circuits_open_with_retry_after(make_provider: Callable[..., Provider],
                                                                    upstream: FakeUpstream) -> None:
    breakers = Breakers(default=BreakerConfig(consecutive_failures=1, cooldown=30))
    dispatcher = Dispatcher({"a": make_provider("openai", "a"), "b": make_provider("openai", "b")}, breakers)
    upstream.script(*[Reply.error_status(500)] * 3, model="model-a")
    upstream.script(*[Reply.error_status(500)] * 3, model="model-b")
    with pytest.raises(AllAttemptsFailed):
        await dispatcher.complete(chat(stream=False), [A, B])
    with pytest.raises(CircuitsOpen) as info:
        await dispatcher.complete(chat(stream=False), [A, B])
    assert info.value.deployments == ["a/model-a", "b/model-b"]
    assert info.value.retry_after is not None and 25 < info.value.retry_after <= 30


# ------------------------------------------------------------------------ an outage with requests in flight
async def test_outage_with_requests_in_flight(make_provider: Callable[..., Provider], upstream: FakeUpstream) -> None:
    """The primary is down for ~1.2 s (a 60 s outage scaled down), cool-down 0.3 s, 8 clients in a loop:
    every request is answered (by the fallback), the primary sees at most one probe per cool-down once
    its circuit is open, and traffic returns to it within one cool-down of its recovery."""
    cooldown, outage = 0.3, 1.2
    breakers = Breakers(default=BreakerConfig(consecutive_failures=3, cooldown=cooldown))
    roomy = {"connect": 5.0, "read": 10.0, "total": 20.0, "ttft": 10.0, "stall": 10.0}  # not a timeout test
    dispatcher = Dispatcher({"a": make_provider("openai", "a", timeouts=roomy),
                             "b": make_provider("openai", "b", timeouts=roomy)}, breakers)
    upstream.script(*[Reply.error_status(503, "down")] * 10_000, model="model-a")
    served: list[tuple[float, str]] = []
    opened_at: list[float] = []
    probes: list[int] = []
    claimed: list[float] = []
    started = time.monotonic()

    class Opened:
        """Told by the breaker the moment it opens (the hook replicas share circuits through): polling
        ``states()`` between requests can miss an open that a slow request outlasts."""

        def opened(self, name: str, cooldown_s: float) -> None:
            if name == "a/model-a" and not opened_at:
                opened_at.append(time.monotonic() - started)
                upstream.requests.clear()

        def closed(self, name: str) -> None:
            pass

        def claim_probe(self, name: str) -> bool:  # asked once per half-open probe the breaker lets through
            if name == "a/model-a" and time.monotonic() - started < outage:
                claimed.append(time.monotonic() - started)
            return True

    breakers.shared = Opened()

    async def client(stop: float) -> None:
        while time.monotonic() - started < stop:
            result = await dispatcher.stream(chat(), [A, B])
            text, _, error = await drain(result)
            assert error is None and text
            served.append((time.monotonic() - started, result.candidate.deployment))
            await asyncio.sleep(0.01)

    async def recover() -> None:
        await asyncio.sleep(outage)
        probes.append(per_deployment(upstream)["model-a"])  # calls that reached a since its circuit opened
        upstream.unscript("model-a")

    # A full garbage collection of the suite's heap can stall the loop for most of a cool-down: not what
    # this test measures (a CI run once saw no call reach the recovered primary before the clients stopped).
    collecting = gc.isenabled()
    gc.disable()
    try:
        await asyncio.gather(recover(), *(client(outage + 3 * cooldown + SLACK) for _ in range(8)))
    finally:
        if collecting:
            gc.enable()
    assert opened_at, "the primary's circuit opened"
    assert not [t for t, d in served if d == "a/model-a" and t < outage]  # all served by the fallback
    allowed = int((outage - opened_at[0]) / cooldown) + 2
    assert len(claimed) <= allowed, claimed  # at most one probe per cool-down
    # What reached the primary after it opened: those probes, and the clients' calls already on their way
    # when it opened (8 clients).
    assert probes[0] <= len(claimed) + 8, (probes, claimed)
    back = [t for t, d in served if d == "a/model-a" and t >= outage]
    assert back, f"no call reached the recovered primary; the last served: {served[-4:]}"
    assert back[0] - outage <= cooldown + SLACK  # traffic returns within one cool-down


async def test_content_filter_event_mid_stream_is_not_continued_nor_held_against_the_deployment(
        three: Dispatcher, upstream: FakeUpstream) -> None:
    def data(obj: str) -> bytes:
        return b"data: " + obj.encode() + b"\n\n"

    events = [data('{"id":"c1","model":"model-a","created":1,"choices":[{"index":0,"delta":{"role":"assistant",'
                   '"content":"Once upon"},"finish_reason":null}]}'),
              data('{"error":{"message":"Output blocked by the content filter","type":"invalid_request_error",'
                   '"param":null,"code":"content_filter"}}')]
    upstream.script(Reply(events=events), model="model-a")
    result = await three.stream(chat(), [A, B])
    text, _, error = await drain(result)
    assert isinstance(error, StreamInterrupted) and text == "Once upon"
    assert result.error.kind == "bad_request" and result.error.code == "content_filter"  # type: ignore[attr-defined]
    assert per_deployment(upstream) == {"model-a": 1}  # not continued elsewhere
    assert three.breakers.states()["a/model-a"] == "closed" and three.breakers.get("a/model-a", "a")._consecutive == 0


async def test_every_retry_fallback_and_circuit_change_is_logged_without_the_key(
        make_provider: Callable[..., Provider], upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-live-NEVER-IN-A-LOG-42"
    monkeypatch.setenv("THRIFTY_TEST_KEY", secret)
    breakers = Breakers(default=BreakerConfig(consecutive_failures=1, cooldown=30))
    dispatcher = Dispatcher({"a": make_provider("openai", "a", api_key_env="THRIFTY_TEST_KEY"),
                             "b": make_provider("openai", "b")}, breakers)
    upstream.script(Reply.error_status(503, f"overloaded, key {secret}"), model="model-a")
    with caplog.at_level("WARNING", logger="thrifty.router"):
        result = await dispatcher.stream(chat(), [A, B])
        await drain(result)
    lines = [r.getMessage() for r in caplog.records]
    assert any("provider a deployment a/model-a attempt 1: server 503" in line for line in lines)
    assert any(line.startswith("circuit a/model-a: open") for line in lines)
    assert all(secret not in line for line in lines) and any("[redacted]" in line for line in lines)


async def test_a_field_one_provider_cannot_honour_falls_back_to_one_that_can(
        make_provider: Callable[..., Provider], upstream: FakeUpstream) -> None:
    dispatcher = Dispatcher({"an": make_provider("anthropic", "an"), "b": make_provider("openai", "b")})
    claude = cand("an", "claude")
    request = ChatRequest(messages=[Message(role="user", content="hi")], seed=7)
    result = await dispatcher.complete(request, [claude, B])
    assert result.candidate is B and [(a.deployment, a.kind) for a in result.attempts] == [
        ("an/claude", "unsupported_field"), ("b/model-b", None)]
    assert per_deployment(upstream) == {"model-b": 1}  # nothing was sent to the provider that cannot honour it
    with pytest.raises(UpstreamError) as info:  # nobody can: the caller's 400 naming the field
        await dispatcher.complete(request, [claude])
    assert info.value.status == 400 and "seed" in str(info.value)
    assert dispatcher.breakers.states()["an/claude"] == "closed"


async def test_a_continuation_gets_what_the_callers_max_tokens_left(three: Dispatcher, upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=FULL, cut_after=CUT_AT_40), model="model-a")
    upstream.script(Reply(text=FULL, continues=True), model="model-b")
    request = ChatRequest(messages=[Message(role="user", content="Count.")], stream=True, max_tokens=200)
    result = await three.stream(request, [A, B])
    text, _, error = await drain(result)
    assert error is None and text == FULL
    assert upstream.requests[1].body["max_tokens"] == 200 - estimate_tokens("".join(TOKENS[:40]))
    upstream.reset()
    upstream.script(Reply(text=FULL, cut_after=CUT_AT_40), model="model-a")
    spent = ChatRequest(messages=[Message(role="user", content="Count.")], stream=True, max_tokens=30)
    result = await three.stream(spent, [A, B])
    _, _, error = await drain(result)
    assert isinstance(error, StreamInterrupted) and per_deployment(upstream) == {"model-a": 1}


async def test_a_cut_after_the_finish_reason_keeps_the_whole_answer(three: Dispatcher, upstream: FakeUpstream) -> None:
    pieces = len(FULL) // 12
    upstream.script(Reply(text=FULL, cut_after=1 + pieces + 1), model="model-a")  # role, text, finish; no usage
    result = await three.stream(chat(), [A, B])
    text, _, error = await drain(result)
    assert error is None and text == FULL and result.complete and not result.continued
    assert result.cost_estimated and per_deployment(upstream) == {"model-a": 1}


async def test_an_anthropic_fallback_continues_by_prefill(make_provider: Callable[..., Provider],
                                                         upstream: FakeUpstream) -> None:
    dispatcher = Dispatcher({"a": make_provider("openai", "a"), "an": make_provider("anthropic", "an")})
    upstream.script(Reply(text=FULL, cut_after=CUT_AT_40), model="model-a")
    upstream.script(Reply(text=FULL, continues=True), model="claude")
    result = await dispatcher.stream(chat(), [A, cand("an", "claude", prefill=True)])
    text, _, error = await drain(result)
    assert error is None and text == FULL and result.complete
    sent = upstream.requests[1]
    assert sent.path == "/v1/messages" and sent.body["messages"][-1]["role"] == "assistant"
