"""An optional judge model for experiments: for a sample of a non-control arm's answered requests, control's
answer to the same request is fetched and a judge model says which of the two is better; off the request
path, after the caller has its answer.

    experiments:
      - name: cheaper-model
        ...
        judge: {model: gpt-4o, sample: 0.02, max_pending: 4}

The two answers are shown to the judge in a random order (the order is drawn per request, so a judge that
prefers whichever answer comes second scores 0.5 on average, not 1), and it replies with a number from 0
to 1: the probability that answer B is at least as good as answer A. The arm's request gets a ``labels``
row (source ``judge``, ``score`` = the probability that the *arm's* answer is at least as good as
control's), which the report shows as the arm's ``judge`` metric: 0.5 is parity. The extra calls (control's
answer and the judge's) are real upstream calls: each is a ledger row of the tenant, route
``judge:<experiment>``, outside the experiment's arms, so their cost is visible and never mixed into an
arm's figures. A judge reply that is not a number in [0, 1] is dropped (counted in the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from typing import TYPE_CHECKING, Any

import msgspec

from router.types import ChatRequest, Message, ThriftyOptions, text_of

if TYPE_CHECKING:
    from engine.experiments import ExperimentConfig, JudgeConfig

log = logging.getLogger("thrifty.experiments")

PROMPT = ("You compare two answers to the same request. Reply with only a number from 0 to 1: the probability "
          "that answer B is at least as good as answer A (correct, helpful, complete, concise).")
_NUMBER = re.compile(r"(?<![\d.])(0(?:\.\d+)?|1(?:\.0+)?|\.\d+)(?!\d|\.\d)")
_MAX_CHARS = 6000  # of each answer and of the request shown to the judge


def parse_score(text: str | None) -> float | None:
    """The first number in [0, 1] of the judge's reply, or None."""
    m = _NUMBER.search(text or "")
    return float(m.group(1)) if m else None


def _transcript(request: ChatRequest) -> str:
    return "\n".join(f"{m.role}: {text_of(m.content)}" for m in request.messages)[-_MAX_CHARS:]


def _answer(response: Any) -> str:
    msg = response.choices[0].message if response is not None and response.choices else None
    return ((msg.content or "") if msg is not None else "")[:_MAX_CHARS]


class Judge:
    """The sampled comparisons of one Engine; tasks on the engine's event loop, at most ``max_pending``."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()

    def wants(self, cfg: JudgeConfig) -> bool:
        return len(self._tasks) < cfg.max_pending and self._rng.random() < cfg.sample

    def submit(self, exp: ExperimentConfig, ctx: Any, original: ChatRequest, response: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._compare(exp, ctx.tenant, ctx.meta.request_id, original, response,
                                              swap=self._rng.random() < 0.5))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for the comparisons in flight (tests, shutdown); cancel what is left after ``timeout``."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for t in pending:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def _call(self, exp: ExperimentConfig, tenant: str, request: ChatRequest, policy: str | None) -> Any:
        e = self.engine
        decision = e.rank(request, None, tenant=tenant, options=ThriftyOptions(), policy=policy)
        t0 = time.perf_counter()
        result = await e.dispatcher.complete(request, list(decision.candidates), e.deadline())
        self._ledger_row(exp, tenant, request, result, (time.perf_counter() - t0) * 1e3)
        return result.response

    def _ledger_row(self, exp: ExperimentConfig, tenant: str, request: ChatRequest, result: Any, ms: float) -> None:
        from engine.ledger import UsageRecord, new_request_id

        u = result.response.usage
        self.engine.ledger.record(UsageRecord(
            request_id=new_request_id(), ts=time.time(), tenant=tenant, cache="bypass", status=200,
            route=f"judge:{exp.name}", model=result.candidate.model.id, provider=result.candidate.route.provider,
            prompt_tokens=u.prompt_tokens if u else 0, completion_tokens=u.completion_tokens if u else 0,
            cost_usd=float(result.cost_usd or 0.0), cost_estimated=bool(result.cost_estimated), latency_ms=ms,
            attempts=len(result.attempts), worker=self.engine.worker))

    async def _compare(self, exp: ExperimentConfig, tenant: str, request_id: str, original: ChatRequest,
                       arm_response: Any, *, swap: bool) -> None:
        assert exp.judge is not None
        control = exp.arm(exp.control)
        try:
            req = msgspec.structs.replace(original, stream=None, stream_options=None, n=None)
            if control.model is not None:
                req = msgspec.structs.replace(req, model=control.model)
            control_response = await self._call(exp, tenant, req, control.policy)
            a, b = _answer(control_response), _answer(arm_response)
            if swap:
                a, b = b, a
            ask = ChatRequest(model=exp.judge.model, max_tokens=8, temperature=0.0, messages=[
                Message(role="system", content=PROMPT),
                Message(role="user", content=f"Request:\n{_transcript(original)}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}")])
            verdict = await self._call(exp, tenant, ask, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a judge failure never reaches the caller, whose answer went out already
            log.warning("experiment %s: judge comparison failed: %s", exp.name, exc)
            return
        score = parse_score(_answer(verdict))
        if score is None:
            log.warning("experiment %s: the judge's reply is not a number in [0, 1]; dropped", exp.name)
            return
        arm_score = 1.0 - score if swap else score
        from engine.ledger import Label

        detail = msgspec.json.encode({"experiment": exp.name, "judge": exp.judge.model, "swapped": swap}).decode()
        label = Label(request_id=request_id, tenant=tenant, namespace=None, source="judge", good=arm_score >= 0.5,
                      score=arm_score, detail=detail)
        await asyncio.to_thread(self.engine.ledger.add_label, label)
