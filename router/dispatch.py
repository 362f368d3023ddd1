"""Dispatch: send a request down the router's ranked candidates until one answers.

The semantics table of DESIGN.md, row by row:
- connect error, 408, 429, 5xx, malformed body: retry the same deployment with full-jitter
  backoff (Retry-After honoured, capped by the deadline), then fall back to the next candidate;
- read / first-token timeout: fall back to the next candidate at once (``retry_on_timeout`` to retry);
- context length exceeded: no retry; skip to a candidate with a larger context window;
- 400/401/403/404/422: fail at once with the provider's message (``UpstreamError``), no fallback;
- repeated failures: the deployment's circuit opens; open circuits are skipped; a request counts at most
  one failure per deployment (its retries do not), so one bad prompt cannot open a circuit alone;
- every candidate's circuit open: ``CircuitsOpen`` (a 503 with Retry-After at the edge);
- a stream failing before its first content chunk is a failed attempt like any other; after content
  reached the caller the next candidates are asked to continue the text (``router._recovery``); when
  none can, it ends with ``StreamInterrupted`` carrying the original error (never a truncated success);
- a stream is complete when every choice has a finish_reason and it ended without a transport error
  (with or without the provider's end sentinel);
- total deadline reached: ``DeadlineExceeded`` listing every attempt.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar

import msgspec

from router._recovery import Seam, add_usage, continuable, continuation_request, fits
from router._retry import retry_delay
from router.breaker import Breakers, CircuitBreaker
from router.candidate import Candidate
from router.cost import Cost, answer_cost
from router.deadline import Deadline
from router.errors import (
    AllAttemptsFailed,
    Attempt,
    CircuitsOpen,
    ContextLengthExceeded,
    DeadlineExceeded,
    DispatchError,
    IncompleteStream,
    MalformedResponse,
    ProviderError,
    StreamInterrupted,
    StreamStalled,
    UpstreamError,
    UpstreamTimeout,
)
from router.providers.base import ChunkStream, Provider
from router.providers.config import RetryPolicy
from router.providers.fields import UnsupportedField
from router.streaming import ChunkAccumulator, StreamResult
from router.types import ChatChunk, ChatRequest, ChatResponse, Usage

log = logging.getLogger("thrifty.router")
# Called with the candidate right before each upstream call of the current request (engine tracing: it
# draws the attempt's span id and sets the traceparent the call carries). Per request, hence a ContextVar:
# the router stays free of OpenTelemetry and of the engine.
ON_ATTEMPT: ContextVar[Callable[[Candidate], None] | None] = ContextVar("thrifty_on_attempt", default=None)


class DispatchPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    total_timeout: float | None = 120.0  # default request deadline when the caller gives none
    fallback: bool = True  # False: only the first candidate is tried (still retried)


class DispatchResult(msgspec.Struct):
    response: ChatResponse
    candidate: Candidate
    cost_usd: float
    cost_estimated: bool
    attempts: list[Attempt]


def _has_content(chunk: ChatChunk) -> bool:
    for c in chunk.choices:
        d = c.delta
        if d.content or d.tool_calls or d.refusal or c.finish_reason:
            return True
    return False


class Dispatcher:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        breakers: Breakers | None = None,
        policy: DispatchPolicy | None = None,
        *,
        rng: random.Random | None = None,
        on_bad_events: Callable[[str, int], None] | None = None,
    ) -> None:
        self.providers = providers
        self.on_bad_events = on_bad_events  # (deployment, count) per stream that skipped bad events
        self.breakers = breakers or Breakers({n: p.config.breaker for n, p in providers.items()})
        self.policy = policy or DispatchPolicy()
        self._rng = rng or random.Random()

    def is_open(self, deployment: str) -> bool:
        """For the router: skip (or demote) a deployment whose circuit is open."""
        return self.breakers.is_open(deployment)

    def warm(self) -> None:
        """Let providers that keep connections build their clients before the first request."""
        for provider in self.providers.values():
            warm = getattr(provider, "warm", None)  # an optional hook: simulated providers have none
            if warm is not None:
                warm()

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()

    def _deadline(self, deadline: Deadline | None) -> Deadline:
        return deadline if deadline is not None else Deadline(self.policy.total_timeout)

    # ------------------------------------------------------------------------------------ public
    async def complete(self, request: ChatRequest, candidates: Sequence[Candidate],
                       deadline: Deadline | None = None) -> DispatchResult:
        if request.stream:
            request = msgspec.structs.replace(request, stream=None, stream_options=None)
        deadline = self._deadline(deadline)
        attempts: list[Attempt] = []
        rejected: list[ProviderError] = []
        for candidate, provider, breaker in self._candidates(candidates, attempts, deadline):
            response = await self._try_candidate(provider, breaker, request, candidate, deadline, attempts, False,
                                                 rejected)
            if response is None:
                continue
            assert isinstance(response, ChatResponse)
            cost = answer_cost(request, response, candidate.price)
            return DispatchResult(response=response, candidate=candidate, cost_usd=float(cost.usd),
                                  cost_estimated=cost.estimated, attempts=attempts)
        raise self._exhausted(attempts, deadline, rejected)

    async def stream(self, request: ChatRequest, candidates: Sequence[Candidate],
                     deadline: Deadline | None = None) -> StreamResult:
        """Open a stream: retries and fallback happen here, before the first content chunk is returned;
        after it, a broken stream is continued on the candidates that follow (``_recover``)."""
        if not request.stream:
            request = msgspec.structs.replace(request, stream=True)
        deadline = self._deadline(deadline)
        attempts: list[Attempt] = []
        rejected: list[ProviderError] = []
        for candidate, provider, breaker in self._candidates(candidates, attempts, deadline):
            opened = await self._try_candidate(provider, breaker, request, candidate, deadline, attempts, True,
                                               rejected)
            if opened is None:
                continue
            assert isinstance(opened, tuple)
            upstream, head = opened
            pos = next(i for i, c in enumerate(candidates) if c is candidate)
            result = StreamResult(_empty(), candidate, attempts)
            # The first attempt's chunks are the caller's as they come: it shares the caller's accumulator.
            first = _Segment(request, candidate, provider, breaker, upstream, head, acc=result.accumulator)
            result._source = self._pump(request, first, result, deadline, list(candidates[pos + 1:]))
            return result
        raise self._exhausted(attempts, deadline, rejected)

    # ------------------------------------------------------------------------------------ the loop
    def _candidates(self, candidates: Sequence[Candidate], attempts: list[Attempt], deadline: Deadline
                    ) -> Iterator[tuple[Candidate, Provider, CircuitBreaker]]:
        """Candidates worth trying, in order; each skip is recorded as an attempt that explains it."""
        for i, candidate in enumerate(candidates):
            if deadline.expired:
                attempts.extend(Attempt(c.deployment, 0.0, "deadline", None, "not tried: the deadline was reached")
                                for c in candidates[i:])
                return
            if i > 0 and not self.policy.fallback:
                return
            min_window = _overflowed_window(attempts, candidates) if attempts else None
            deployment = candidate.deployment
            if min_window is not None and candidate.model.context_window <= min_window:
                attempts.append(Attempt(deployment, 0.0, "skipped", None,
                                        f"context window {candidate.model.context_window} is not larger than "
                                        f"{min_window}, which overflowed"))
                continue
            provider = self.providers.get(candidate.route.provider)
            if provider is None:
                attempts.append(Attempt(deployment, 0.0, "unknown_provider", None,
                                        f"no provider named {candidate.route.provider!r} is configured"))
                continue
            breaker = self.breakers.get(deployment, candidate.route.provider)
            if not breaker.allow():
                attempts.append(Attempt(deployment, 0.0, "circuit_open", None, "circuit breaker is open"))
                continue
            yield candidate, provider, breaker

    async def _try_candidate(
        self, provider: Provider, breaker: CircuitBreaker, request: ChatRequest, candidate: Candidate,
        deadline: Deadline, attempts: list[Attempt], streaming: bool, rejected: list[ProviderError],
    ) -> ChatResponse | tuple[ChunkStream, list[ChatChunk]] | None:
        """Try one deployment with retries; None means fall back to the next candidate. ``rejected``
        collects fields a provider refused before sending anything (another one may honour them)."""
        policy = provider.config.retries
        counted = False  # one request is one verdict on the deployment's health, however many retries
        for retry in range(max(1, policy.attempts)):
            if retry and not breaker.allow():
                attempts.append(Attempt(candidate.deployment, 0.0, "circuit_open", None, "circuit breaker opened"))
                return None
            started = time.perf_counter()
            try:
                if streaming:
                    outcome: ChatResponse | tuple[ChunkStream, list[ChatChunk]] = await self._open_stream(
                        provider, request, candidate, deadline)
                else:
                    outcome = await self._call(provider, request, candidate, deadline)
            except ProviderError as exc:
                attempts.append(Attempt(candidate.deployment, time.perf_counter() - started, exc.kind, exc.status,
                                        exc.message))
                if isinstance(exc, UnsupportedField):  # nothing was sent: no verdict on the deployment
                    breaker.release()
                    rejected.append(exc)
                    _warn(candidate, retry, exc, "falling back to a provider that may honour it")
                    return None
                if exc.counts_against_breaker:
                    if not counted:
                        breaker.record_failure()
                        counted = True
                else:
                    breaker.record_success()  # it answered: the deployment is healthy, the request is not
                if not exc.retryable and not isinstance(exc, ContextLengthExceeded):
                    _warn(candidate, retry, exc, "the request itself was rejected: no fallback")
                    raise UpstreamError(f"{candidate.deployment} rejected the request: {exc.message}",
                                        attempts, exc) from exc
                delay = self._retry_delay(exc, retry, policy, deadline)
                _warn(candidate, retry, exc, "falling back" if delay is None else f"retrying in {delay:.3f} s")
                if delay is None:
                    return None
                await asyncio.sleep(delay)
                continue
            attempts.append(Attempt(candidate.deployment, time.perf_counter() - started))
            breaker.record_success()
            return outcome
        return None

    def _retry_delay(self, exc: ProviderError, retry: int, policy: RetryPolicy, deadline: Deadline) -> float | None:
        """Seconds before retrying the same deployment, or None to move on to the next candidate."""
        if isinstance(exc, ContextLengthExceeded) or deadline.expired or retry + 1 >= policy.attempts:
            return None
        if isinstance(exc, UpstreamTimeout) and not policy.retry_on_timeout:
            return None  # it did not answer in time: the next candidate is the faster way to an answer
        return retry_delay(exc, retry, policy, self._rng, deadline.remaining())

    async def _call(self, provider: Provider, request: ChatRequest, candidate: Candidate,
                    deadline: Deadline) -> ChatResponse:
        if (hook := ON_ATTEMPT.get()) is not None:
            hook(candidate)
        try:
            async with asyncio.timeout(deadline.cap(provider.config.timeouts.total)):
                response = await provider.send(request, candidate.route, deadline)
        except TimeoutError as exc:
            raise UpstreamTimeout(_timeout_message(deadline, provider.config.timeouts.total),
                                  provider=provider.name) from exc
        if not isinstance(response, ChatResponse):
            await response.aclose()
            raise MalformedResponse("provider returned a stream to a non-streaming request", provider=provider.name)
        return response

    async def _open_stream(self, provider: Provider, request: ChatRequest, candidate: Candidate,
                           deadline: Deadline) -> tuple[ChunkStream, list[ChatChunk]]:
        """Send and read up to the first content chunk, all within the time-to-first-token limit."""
        t = provider.config.timeouts
        ttft = _min(deadline.ttft, t.ttft)  # a caller's limit may shorten the operator's, never lengthen it
        limit = deadline.cap(_min(ttft, t.total))
        upstream: ChunkStream | None = None
        if (hook := ON_ATTEMPT.get()) is not None:
            hook(candidate)
        try:
            async with asyncio.timeout(limit):
                sent = await provider.send(request, candidate.route, deadline)
                if not isinstance(sent, ChunkStream):
                    raise MalformedResponse("provider returned a whole response to a streaming request",
                                            provider=provider.name)
                upstream = sent
                head: list[ChatChunk] = []
                async for chunk in upstream:
                    head.append(chunk)
                    if _has_content(chunk):
                        return upstream, head
                raise IncompleteStream("stream ended before any content", provider=provider.name)
        except TimeoutError as exc:
            if upstream is not None:
                await upstream.aclose()
            raise UpstreamTimeout(f"no first token within {limit:.3f} s", provider=provider.name) from exc
        except BaseException:
            if upstream is not None:
                await upstream.aclose()
            raise

    async def _pump(self, request: ChatRequest, seg: _Segment, result: StreamResult, deadline: Deadline,
                    rest: list[Candidate]) -> AsyncGenerator[ChatChunk, None]:
        acc = result.accumulator
        segments = [seg]
        original: ProviderError | None = None
        current: _Segment | None = seg
        # Usage is always asked of the upstream (for the cost); the caller gets the usage-only chunk
        # (choices: []) only when it asked for one.
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        try:
            while current is not None:
                now = current
                try:
                    async for chunk in self._read(now, deadline):
                        if now.seam is None:  # the healthy path: one feed, no copies
                            acc.feed(chunk)
                            if chunk.choices or include_usage:
                                yield chunk
                            continue
                        now.acc.feed(chunk)  # before the seam rewrites it: this attempt's usage prices it
                        for out in now.seam.feed(chunk):
                            acc.feed(out)
                            if out.choices or include_usage:
                                yield out
                    for out in now.flush():
                        acc.feed(out)
                        yield out
                    if not acc.finished:
                        raise IncompleteStream("stream ended without a finish_reason", provider=now.provider.name)
                    self._end_segment(now, None, result.attempts)
                    current = None
                except ProviderError as exc:
                    await now.upstream.aclose()  # free its connection before another is opened
                    self._end_segment(now, exc, result.attempts)
                    if acc.finished:
                        # Every choice finished; only the tail (usage, sentinel) was lost: the answer is whole.
                        log.warning("dispatch: %s: stream broke after its finish_reason (%s); the answer is "
                                    "complete, its cost estimated", now.candidate.deployment, exc.kind)
                        current = None
                        break
                    original = original or exc
                    current = await self._recover(request, result, rest, deadline, segments)
                    if current is not None:
                        segments.append(current)
        finally:
            if current is not None:  # the caller stopped reading: release the connection now
                await current.upstream.aclose()
            self._settle(result, segments, original if not acc.finished else None)
        if original is not None and not acc.finished:
            raise StreamInterrupted(
                f"{result.candidate.deployment} failed after {len(acc.text)} characters were streamed",
                result.attempts) from original

    async def _read(self, seg: _Segment, deadline: Deadline) -> AsyncGenerator[ChatChunk, None]:
        """One upstream's chunks (its head first), each within the stall limit."""
        stall = _min(deadline.stall, seg.provider.config.timeouts.stall)
        for chunk in seg.head:
            yield chunk
        while True:
            try:
                async with asyncio.timeout(deadline.cap(stall)):
                    chunk = await seg.upstream.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                msg = "deadline reached mid-stream" if deadline.expired else f"no chunk for {stall} s"
                raise StreamStalled(msg, provider=seg.provider.name) from exc
            yield chunk

    async def _recover(self, request: ChatRequest, result: StreamResult, rest: list[Candidate],
                       deadline: Deadline, segments: list[_Segment]) -> _Segment | None:
        """Ask the next candidates, in order, to continue the text sent so far; None when none can."""
        acc, attempts = result.accumulator, result.attempts
        why = continuable(request, acc) or ("the deadline was reached" if deadline.expired else None)
        if why is None and segments and segments[-1].failure is not None and not segments[-1].failure.retryable:
            why = f"the upstream refused the request itself ({segments[-1].failure.kind})"  # e.g. a content filter
        if why is not None or not rest:
            log.warning("dispatch: %s: stream not continued: %s", result.candidate.deployment,
                        why or "no candidate left")
            return None
        sent = acc.text
        prior = _sum_usage(segments)
        while rest and not deadline.expired:
            candidate = rest.pop(0)
            prefill = candidate.model.capabilities.assistant_prefill
            creq = continuation_request(request, sent, prefill)
            opened = await self._open_continuation(creq, candidate, deadline, attempts)
            if opened is None:
                continue
            provider, breaker, upstream, head = opened
            log.warning("dispatch: continuing the stream of %s on %s after %d characters (%s)",
                        result.candidate.deployment, candidate.deployment, len(sent),
                        "assistant prefill" if prefill else "continuation instruction")
            return _Segment(creq, candidate, provider, breaker, upstream, head, Seam(acc, sent, prefill, prior))
        return None

    async def _open_continuation(self, creq: ChatRequest, candidate: Candidate, deadline: Deadline,
                                 attempts: list[Attempt]
                                 ) -> tuple[Provider, CircuitBreaker, ChunkStream, list[ChatChunk]] | None:
        """One try (no retry: the caller is waiting mid-answer) of one candidate for a continuation."""
        dep = candidate.deployment
        provider = self.providers.get(candidate.route.provider)
        why = "no such provider" if provider is None else fits(candidate, creq)
        breaker = self.breakers.get(dep, candidate.route.provider)
        if why is None and not breaker.allow():
            attempts.append(Attempt(dep, 0.0, "circuit_open", None, "continuation: circuit breaker is open"))
            return None
        if why is not None or provider is None:
            attempts.append(Attempt(dep, 0.0, "skipped", None, f"continuation: {why}"))
            return None
        started = time.perf_counter()
        try:
            upstream, head = await self._open_stream(provider, creq, candidate, deadline)
        except ProviderError as exc:
            attempts.append(Attempt(dep, time.perf_counter() - started, exc.kind, exc.status,
                                    f"continuation: {exc.message}"))
            (breaker.record_failure if exc.counts_against_breaker else breaker.record_success)()
            _warn(candidate, 0, exc, "continuation failed")
            return None
        attempts.append(Attempt(dep, time.perf_counter() - started, "continuation"))
        breaker.record_success()
        return provider, breaker, upstream, head

    def _end_segment(self, seg: _Segment, failure: ProviderError | None, attempts: list[Attempt]) -> None:
        seg.failure = failure
        seg.elapsed = time.perf_counter() - seg.started
        seg.price()  # now, while a shared accumulator still holds only this attempt's chunks
        bad = seg.upstream.bad_events
        if bad is not None and bad.count and self.on_bad_events is not None:
            self.on_bad_events(seg.candidate.deployment, bad.count)
        if failure is None:
            return
        attempts.append(Attempt(seg.candidate.deployment, seg.elapsed, failure.kind, failure.status,
                                f"after content was sent: {failure.message}"))
        _warn(seg.candidate, 0, failure, "after content was sent")
        if failure.counts_against_breaker:
            seg.breaker.record_failure()

    def _settle(self, result: StreamResult, segments: list[_Segment], failure: ProviderError | None) -> None:
        """Cost and usage of every attempt that produced tokens, the flags, the error."""
        costs = [s.price() for s in segments]
        result.cost_usd = float(sum(c.usd for c in costs))
        result.cost_estimated = any(c.estimated for c in costs)
        result.usage = _sum_usage(segments, [c.usage for c in costs])
        result.continued = len(segments) > 1
        if failure is None and result.accumulator.finished:
            result.complete = True
            return
        result.error = failure

    def _exhausted(self, attempts: list[Attempt], deadline: Deadline,
                   rejected: list[ProviderError] | None = None) -> DispatchError:
        if deadline.expired:
            return DeadlineExceeded(f"deadline of {deadline.total} s reached", attempts)
        if not attempts:
            return AllAttemptsFailed("no candidates to dispatch to", attempts)
        if rejected and all(a.kind in _NOT_TRIED or a.kind == rejected[0].kind for a in attempts):
            # Only refused fields stood in the way: the caller's 400 naming the field, from the first.
            first = rejected[0]
            return UpstreamError(f"{attempts[0].deployment} rejected the request: {first.message}", attempts, first)
        if all(a.kind == "circuit_open" for a in attempts):
            names = list(dict.fromkeys(a.deployment for a in attempts))
            return CircuitsOpen(names, self.breakers.retry_after(names), attempts)
        return AllAttemptsFailed("every candidate failed", attempts)


class _Segment:
    """One upstream stream of an answer (the first, or a continuation): its own accumulator prices it."""

    __slots__ = ("_cost", "acc", "breaker", "candidate", "elapsed", "failure", "head", "provider", "request",
                 "seam", "started", "upstream")

    def __init__(self, request: ChatRequest, candidate: Candidate, provider: Provider, breaker: CircuitBreaker,
                 upstream: ChunkStream, head: list[ChatChunk], seam: Seam | None = None,
                 acc: ChunkAccumulator | None = None) -> None:
        self.request, self.candidate, self.provider, self.breaker = request, candidate, provider, breaker
        self.upstream, self.head, self.seam = upstream, head, seam
        self.acc = acc if acc is not None else ChunkAccumulator()
        self.started = time.perf_counter()
        self.elapsed = 0.0
        self.failure: ProviderError | None = None
        self._cost: Cost | None = None

    def price(self) -> Cost:
        """This attempt's tokens and cost (estimated when it sent no usage), fixed the first time asked."""
        if self._cost is None:
            self._cost = answer_cost(self.request, self.acc.response(), self.candidate.price)
        return self._cost

    def flush(self) -> list[ChatChunk]:
        return [] if self.seam is None else self.seam.flush()


def _sum_usage(segments: list[_Segment], usages: list[Usage] | None = None) -> Usage | None:
    """Tokens of every attempt together (estimated where an attempt reported none)."""
    if usages is None:
        usages = [s.price().usage for s in segments]
    total: Usage | None = None
    for usage in usages:
        total = add_usage(total, usage)
    return total


def _warn(candidate: Candidate, retry: int, exc: ProviderError, then: str) -> None:
    """The log line of every failed upstream call (messages are redacted by the providers: no keys)."""
    status = f" {exc.status}" if exc.status is not None else ""
    log.warning("dispatch: provider %s deployment %s attempt %d: %s%s: %s; %s", candidate.route.provider,
                candidate.deployment, retry + 1, exc.kind, status, exc.message, then)


_NOT_TRIED = ("circuit_open", "skipped", "unknown_provider", "deadline")


def _overflowed_window(attempts: list[Attempt], candidates: Sequence[Candidate]) -> int | None:
    """The largest context window that already overflowed, if any."""
    overflowed = [a.deployment for a in attempts if a.kind == "context_length"]
    if not overflowed:
        return None
    windows = {c.deployment: c.model.context_window for c in candidates}
    return max(windows.get(d, 0) for d in overflowed)


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _timeout_message(deadline: Deadline, total: float | None) -> str:
    if deadline.expired:
        return f"request deadline of {deadline.total} s reached"
    return f"attempt exceeded its total timeout of {total} s"


async def _empty() -> AsyncGenerator[ChatChunk, None]:
    return
    yield
