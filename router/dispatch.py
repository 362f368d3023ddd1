"""Dispatch: send a request down the router's ranked candidates until one answers.

The semantics table of DESIGN.md, row by row:
- connect error, timeout, 408, 429, 5xx, malformed body: retry the same deployment with full-jitter
  backoff (Retry-After honoured, capped by the deadline), then fall back to the next candidate;
- context length exceeded: no retry; skip to a candidate with a larger context window;
- 400/401/403/404/422: fail at once with the provider's message (``UpstreamError``), no fallback;
- repeated failures: the deployment's circuit opens; open circuits are skipped;
- a stream failing before its first content chunk is a failed attempt like any other; after content
  reached the caller it ends with ``StreamInterrupted`` (never a silent, truncated success);
- total deadline reached: ``DeadlineExceeded`` listing every attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence

import msgspec

from router._retry import retry_delay
from router.breaker import Breakers, CircuitBreaker
from router.candidate import Candidate
from router.cost import answer_cost
from router.deadline import Deadline
from router.errors import (
    AllAttemptsFailed,
    Attempt,
    ContextLengthExceeded,
    DeadlineExceeded,
    IncompleteStream,
    MalformedResponse,
    ProviderError,
    StreamInterrupted,
    StreamStalled,
    UpstreamError,
    UpstreamTimeout,
)
from router.providers.base import ChunkStream, Provider
from router.streaming import StreamResult
from router.types import ChatChunk, ChatRequest, ChatResponse


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
    ) -> None:
        self.providers = providers
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
        for candidate, provider, breaker in self._candidates(candidates, attempts, deadline):
            response = await self._try_candidate(provider, breaker, request, candidate, deadline, attempts, False)
            if response is None:
                continue
            assert isinstance(response, ChatResponse)
            cost = answer_cost(request, response, candidate.price)
            return DispatchResult(response=response, candidate=candidate, cost_usd=float(cost.usd),
                                  cost_estimated=cost.estimated, attempts=attempts)
        raise self._exhausted(attempts, deadline)

    async def stream(self, request: ChatRequest, candidates: Sequence[Candidate],
                     deadline: Deadline | None = None) -> StreamResult:
        """Open a stream: retries and fallback happen here, before the first content chunk is returned."""
        if not request.stream:
            request = msgspec.structs.replace(request, stream=True)
        deadline = self._deadline(deadline)
        attempts: list[Attempt] = []
        for candidate, provider, breaker in self._candidates(candidates, attempts, deadline):
            opened = await self._try_candidate(provider, breaker, request, candidate, deadline, attempts, True)
            if opened is None:
                continue
            assert isinstance(opened, tuple)
            upstream, head = opened
            result = StreamResult(_empty(), candidate, attempts)
            result._source = self._pump(request, upstream, head, result, provider, breaker, deadline)
            return result
        raise self._exhausted(attempts, deadline)

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
        deadline: Deadline, attempts: list[Attempt], streaming: bool,
    ) -> ChatResponse | tuple[ChunkStream, list[ChatChunk]] | None:
        """Try one deployment with retries; None means fall back to the next candidate."""
        config = provider.config
        policy = config.retries
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
                elapsed = time.perf_counter() - started
                attempts.append(Attempt(candidate.deployment, elapsed, exc.kind, exc.status, exc.message))
                if exc.counts_against_breaker:
                    breaker.record_failure()
                else:
                    breaker.record_success()  # it answered: the deployment is healthy, the request is not
                if isinstance(exc, ContextLengthExceeded):
                    return None
                if not exc.retryable:
                    raise UpstreamError(f"{candidate.deployment} rejected the request: {exc.message}",
                                        attempts, exc) from exc
                if deadline.expired:
                    return None
                delay = retry_delay(exc, retry, policy, self._rng, deadline.remaining())
                if delay is None or retry + 1 >= policy.attempts:
                    return None
                await asyncio.sleep(delay)
                continue
            attempts.append(Attempt(candidate.deployment, time.perf_counter() - started))
            breaker.record_success()
            return outcome
        return None

    async def _call(self, provider: Provider, request: ChatRequest, candidate: Candidate,
                    deadline: Deadline) -> ChatResponse:
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
        ttft = deadline.ttft if deadline.ttft is not None else t.ttft
        limit = deadline.cap(_min(ttft, t.total))
        upstream: ChunkStream | None = None
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

    async def _pump(self, request: ChatRequest, upstream: ChunkStream, head: list[ChatChunk],
                    result: StreamResult, provider: Provider, breaker: CircuitBreaker,
                    deadline: Deadline) -> AsyncGenerator[ChatChunk, None]:
        acc = result.accumulator
        stall = deadline.stall if deadline.stall is not None else provider.config.timeouts.stall
        started = time.perf_counter()
        failure: ProviderError | None = None
        try:
            for chunk in head:
                acc.feed(chunk)
                yield chunk
            while True:
                try:
                    async with asyncio.timeout(deadline.cap(stall)):
                        chunk = await upstream.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    msg = "deadline reached mid-stream" if deadline.expired else f"no chunk for {stall} s"
                    raise StreamStalled(msg, provider=provider.name) from exc
                acc.feed(chunk)
                yield chunk
            if not acc.finished:
                raise IncompleteStream("stream ended without a finish_reason", provider=provider.name)
        except ProviderError as exc:
            failure = exc
        finally:
            await upstream.aclose()
            self._settle(request, result, failure, breaker, started)
        if failure is not None:
            raise StreamInterrupted(
                f"{result.candidate.deployment} failed after {len(acc.text)} characters were streamed",
                result.attempts) from failure

    def _settle(self, request: ChatRequest, result: StreamResult, failure: ProviderError | None,
                breaker: CircuitBreaker, started: float) -> None:
        response = result.accumulator.response()
        cost = answer_cost(request, response, result.candidate.price)
        result.cost_usd, result.cost_estimated, result.usage = float(cost.usd), cost.estimated, cost.usage
        if failure is None:
            result.complete = True
            return
        result.error = failure
        result.attempts.append(Attempt(result.candidate.deployment, time.perf_counter() - started,
                                       failure.kind, failure.status, f"after content was sent: {failure.message}"))
        if failure.counts_against_breaker:
            breaker.record_failure()

    def _exhausted(self, attempts: list[Attempt], deadline: Deadline) -> AllAttemptsFailed:
        if deadline.expired:
            return DeadlineExceeded(f"deadline of {deadline.total} s reached", attempts)
        if not attempts:
            return AllAttemptsFailed("no candidates to dispatch to", attempts)
        return AllAttemptsFailed("every candidate failed", attempts)


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
