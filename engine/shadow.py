"""Shadow mode, explorations and near misses: a fresh answer compared with the cached one, off the request path.

Three kinds of request end with two answers to compare:

* **shadow** (``cache.shadow`` namespaces, ``thrifty.shadow`` / ``x-thrifty-shadow: true``): the cache found a
  hit, the caller got a fresh answer instead;
* **explore** (``cache.adaptive``): the adaptive gate was not sure enough to serve the candidate;
* **nearmiss** (``cache.near_miss``): a candidate scored just under the threshold and was not served.

The request path only notes the would-be answer (its entry id, similarity and the verifier's score); once the
fresh answer is there, :meth:`ShadowWorker.submit` starts a task on the engine's loop that compares the two and
stores the verdict as a row of the ledger's ``labels`` table, and teaches the adaptive gate when there is one.

How two answers are compared (:func:`structured_match`, :meth:`ShadowWorker.compare`):

* tool calls: the same functions with the same arguments (parsed JSON), in order; structured output
  (``response_format`` json): the same parsed JSON value. Exact, score 1 or 0;
* text: equal after folding whitespace and case, else the cosine of the two answers' embeddings with the
  cache's encoder, a match at or above ``shadow.text_threshold`` (0.85 by default: on the simulated answers of
  bench/adaptive_replay.py, 1 % of rewordings of one answer score under it, 5 % under 0.90), or, with ``compare: judge``, a yes/no question to ``judge_model`` sent through the
  engine's dispatcher (its cost is written in the label's detail).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import numpy as np

from engine.config import ShadowConfig
from engine.ledger import Label
from router.types import ChatRequest, ChatResponse, Message, ThriftyOptions

if TYPE_CHECKING:
    from engine.engine import Engine

log = logging.getLogger("thrifty.shadow")
_decode_response = msgspec.json.Decoder(ChatResponse).decode
Kind = Literal["shadow", "explore", "nearmiss"]
_SOURCE = {"shadow": "shadow", "explore": "shadow", "nearmiss": "nearmiss"}
JUDGE_PROMPT = (
    "You check a cache. A user asked:\n<question>\n{question}\n</question>\n"
    "Answer A:\n<a>\n{a}\n</a>\nAnswer B:\n<b>\n{b}\n</b>\n"
    "Would answer A serve this user as well as answer B (same facts, same action, nothing wrong)? "
    "Reply with one word: YES or NO."
)


@dataclass
class Job:
    """What a finished request leaves for a comparison."""

    kind: Kind
    request_id: str
    tenant: str
    namespace: str | None
    entry_id: int | None
    similarity: float | None
    score: float | None  # the hit policy's Verdict.score of the would-be hit (None for exact ones)
    cached: bytes  # the would-be answer, as stored
    fresh: ChatResponse
    question: str
    structured: bool  # the request asked for JSON output


@dataclass
class Judgement:
    good: bool
    score: float
    source: str  # shadow | judge | nearmiss
    detail: str


def _canon_tools(response: ChatResponse) -> list[tuple[str, Any]] | None:
    msg = response.choices[0].message if response.choices else None
    calls = msg.tool_calls if msg is not None else None
    if not calls:
        return None
    out = []
    for call in calls:
        try:
            args: Any = json.loads(call.function.arguments or "null")
        except json.JSONDecodeError:
            args = call.function.arguments
        out.append((call.function.name, args))
    return out


def text_of_answer(response: ChatResponse) -> str:
    msg = response.choices[0].message if response.choices else None
    return (msg.content or "") if msg is not None else ""


def structured_match(cached: ChatResponse, fresh: ChatResponse, structured: bool) -> bool | None:
    """The exact verdict for tool calls and JSON output; None when both answers are plain text."""
    a, b = _canon_tools(cached), _canon_tools(fresh)
    if a is not None or b is not None:
        return a == b
    if structured:
        try:
            return bool(json.loads(text_of_answer(cached)) == json.loads(text_of_answer(fresh)))
        except json.JSONDecodeError:
            return text_of_answer(cached).strip() == text_of_answer(fresh).strip()
    return None


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


class ShadowWorker:
    """Which requests are shadowed, and the comparisons of finished ones (tasks on the engine's loop)."""

    def __init__(self, engine: Engine, config: ShadowConfig) -> None:
        self.e = engine
        self.config = config
        self._names = frozenset(config.namespaces)
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random()
        self.dropped = 0
        self.done = 0

    def wants(self, options: ThriftyOptions, namespace: str) -> bool:
        """Is this request shadowed? The request's own ``shadow`` wins; else the config's namespaces."""
        if options.shadow is not None:
            return options.shadow
        if not self._names or (namespace not in self._names and "*" not in self._names):
            return False
        return self.config.sample >= 1.0 or self._rng.random() < self.config.sample

    # ------------------------------------------------------------------------------------------ jobs
    def submit(self, job: Job) -> None:
        """Start the comparison of ``job`` on the running loop; never waits. Beyond ``max_pending`` waiting
        comparisons the job is dropped (counted in ``dropped``)."""
        if len(self._tasks) >= self.config.max_pending:
            self.dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for every comparison started so far (tests, flush, shutdown), at most ``timeout`` seconds."""
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while self._tasks:
            left = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if left is not None and left <= 0:
                return
            await asyncio.wait(list(self._tasks), timeout=left)

    async def _run(self, job: Job) -> None:
        try:
            verdict = await self.compare(job)
            await asyncio.to_thread(self._record, job, verdict)
            self.done += 1
        except Exception:  # a comparison never fails anything else; the label is just missing
            log.warning("shadow comparison of request %s failed", job.request_id, exc_info=True)

    def _record(self, job: Job, v: Judgement) -> None:
        self.e.ledger.add_label(Label(
            request_id=job.request_id, tenant=job.tenant, namespace=job.namespace,
            source=v.source if job.kind != "nearmiss" else "nearmiss", good=v.good, score=v.score,
            entry_id=job.entry_id, similarity=job.similarity, detail=v.detail))
        gate = self.e.gate
        if gate is not None and job.entry_id and job.score is not None and job.namespace is not None:
            gate.learn(job.namespace, job.entry_id, job.score, v.good)

    # ------------------------------------------------------------------------------------------ comparing
    async def compare(self, job: Job) -> Judgement:
        cached = _decode_response(job.cached)
        source = _SOURCE[job.kind]
        exact = structured_match(cached, job.fresh, job.structured)
        if exact is not None:
            return Judgement(exact, float(exact), source, "structured: " + ("same" if exact else "different"))
        a, b = text_of_answer(cached), text_of_answer(job.fresh)
        if _fold(a) == _fold(b):
            return Judgement(True, 1.0, source, "text: identical")
        if self.config.compare == "judge":
            return await self._judge(job, a, b)
        va, vb = await asyncio.gather(self.e.embed(a or " "), self.e.embed(b or " "))
        cos = float(np.dot(va, vb) / max(float(np.linalg.norm(va) * np.linalg.norm(vb)), 1e-12))
        good = cos >= self.config.text_threshold
        return Judgement(good, cos, source, f"text: cosine {cos:.3f} vs {self.config.text_threshold:g}")

    async def _judge(self, job: Job, a: str, b: str) -> Judgement:
        e = self.e
        model = self.config.judge_model or ""
        req = ChatRequest(model=model, temperature=0.0, max_tokens=3, messages=[
            Message(role="user", content=JUDGE_PROMPT.format(question=job.question, a=a, b=b))])
        decision = e.rank(req, None, tenant=job.tenant, options=ThriftyOptions(), policy=None)
        result = await e.dispatcher.complete(req, list(decision.candidates), e.deadline(None))
        said = text_of_answer(result.response).strip().upper()
        good = said.startswith("YES")
        cost = float(result.cost_usd or 0.0)
        return Judgement(good, float(good), "judge", f"judge {model}: {said[:8]!r}, cost ${cost:.6f}")
