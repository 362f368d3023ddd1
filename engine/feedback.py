"""Feedback on answers: ``POST /v1/feedback`` and ``Engine.feedback``.

    POST /v1/feedback   {"request_id": "<x-thrifty-request-id>", "rating": "good" | "bad"}   (or "score": 0..1)
                        optional "correct_answer": "..."  -> {"request_id", "good", "withdrawn", "entry_id"}

The caller's key decides the tenant, and only that tenant's requests can be rated: another tenant's request id
is answered exactly like an unknown one (404), so the endpoint tells nobody which ids exist. One rating per
request (a second is a 409).

A served cached answer (``x-thrifty-cache: hit`` or ``exact``) rated bad is withdrawn at once, through
``SemanticCache.delete`` (the cache's public delete: every process and replica sees it), so it is never served
again; the label also teaches the adaptive gate (cache.adaptive) about that entry and its neighbourhood. Every
rating is a row of the ledger's ``labels`` table (source ``feedback``); the label names the entry only when the
rated answer came from the cache, so the false-hit estimate counts only cached answers. The correct answer is
content: it is kept in the label's detail only when ``log_content`` is on.

With replicas on one Redis, a request can be rated through any replica: one whose ledger lacks the request
reads it from ``engine.state.feedback_index`` (its tenant, outcome and the served entry's exact key), and
"already rated" holds across replicas.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from engine.errors import ConflictError, RequestError
from engine.ledger import Label, Ledger
from engine.limits import check_depth

if TYPE_CHECKING:
    from engine.engine import Engine
    from engine.server import Proxy

_json = msgspec.json.Encoder()


class NotFoundError(RequestError):
    status = 404
    type = "not_found_error"


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    request_id: str
    rating: Literal["good", "bad"] | None = None
    score: float | None = None  # 0..1; below 0.5 counts as bad
    correct_answer: str | None = None


class FeedbackResult(msgspec.Struct, kw_only=True):
    request_id: str
    good: bool
    withdrawn: bool  # the cached answer was deleted from the cache
    entry_id: int | None  # the cache entry the rated answer came from


_decode = msgspec.json.Decoder(FeedbackRequest).decode


def _checked(body: FeedbackRequest, max_chars: int) -> bool:
    """Whether the rating is good; a 400 naming the field when the body is not a rating."""
    if not body.request_id or len(body.request_id) > max_chars:
        raise RequestError(f"request_id must be a non-empty string of at most {max_chars} characters",
                           param="request_id")
    if body.rating is None and body.score is None:
        raise RequestError('give "rating": "good" or "bad", or a "score" between 0 and 1', param="rating")
    if body.score is not None and not (math.isfinite(body.score) and 0.0 <= body.score <= 1.0):
        raise RequestError(f"score must be a number between 0 and 1, got {body.score}", param="score")
    good = body.rating == "good" if body.rating is not None else bool(body.score is not None and body.score >= 0.5)
    if body.rating is not None and body.score is not None and good != (body.score >= 0.5):
        raise RequestError("rating and score disagree (a score below 0.5 is a bad rating)", param="score")
    if body.correct_answer is not None and len(body.correct_answer) > 64 * 1024:
        raise RequestError("correct_answer is longer than 65536 characters", param="correct_answer")
    return good


async def apply_feedback(engine: Engine, body: FeedbackRequest, tenant: str) -> FeedbackResult:
    good = _checked(body, engine.settings.raw.server.max_field_chars)
    await asyncio.to_thread(engine.ledger.flush)  # the rated request's ledger row may still be queued
    return await asyncio.to_thread(_apply, engine, body, tenant, good)


def _apply(engine: Engine, body: FeedbackRequest, tenant: str, good: bool) -> FeedbackResult:
    ledger = engine.ledger
    row = ledger.request_of(body.request_id, tenant)
    index = engine.state.feedback_index if engine.state is not None else None
    if row is None and index is not None:  # served by another replica (engine.state.feedback_index)
        row = _other_replicas(engine, index, body.request_id, tenant)
    if row is None:
        raise NotFoundError(f"no request {body.request_id[:64]!r} for this key", param="request_id")
    already = f"request {body.request_id[:64]!r} was already rated"
    if ledger.query("SELECT 1 FROM labels WHERE request_id = ? AND tenant = ? AND source = 'feedback' LIMIT 1",
                    (body.request_id, tenant)):
        raise ConflictError(already, param="request_id")
    if index is not None and index.claim_rating(body.request_id) is False:  # rated through another replica
        raise ConflictError(already, param="request_id")
    entry_id = int(row["entry_id"]) if row["entry_id"] else None
    if entry_id is None and row["cache"] == "exact":  # served while its cache write was in flight
        entry_id = engine.entry_served_in_flight(body.request_id)
    served = row["cache"] in ("hit", "exact") and entry_id is not None
    if not served:
        entry_id = None
    withdrawn = False
    if served and not good:
        withdrawn = bool(engine.cache.delete(entry_id))
    detail: dict[str, Any] = {"cache": row["cache"]}
    if body.score is not None:
        detail["score"] = body.score
    if body.correct_answer is not None:
        detail["correct_answer"] = body.correct_answer if engine.settings.raw.log_content else "(given, not kept)"
    if withdrawn:
        detail["withdrawn"] = True
    ledger.add_label(Label(
        request_id=body.request_id, tenant=tenant, namespace=row["namespace"], source="feedback", good=good,
        score=body.score if body.score is not None else float(good), entry_id=entry_id,
        similarity=row["similarity"] if served else None, detail=json.dumps(detail)))
    gate = engine.gate if served and row["cache"] == "hit" else None
    if gate is not None and row["hit_score"] is not None and row["namespace"] is not None and entry_id:
        gate.learn(row["namespace"], entry_id, float(row["hit_score"]), good)
    return FeedbackResult(request_id=body.request_id, good=good, withdrawn=withdrawn, entry_id=entry_id)


def _other_replicas(engine: Engine, index: Any, request_id: str, tenant: str) -> dict[str, Any] | None:
    """``request_of``'s row for a request another replica served, read from the shared index, with the
    served entry's id here (found by its exact key, which names it on every replica); None when unknown or
    another tenant's."""
    rec = index.get(request_id)
    if rec is None or rec.get("tenant") != tenant:
        return None
    entry_id = None
    key = rec.get("key") or ""
    if key and rec.get("cache") in ("hit", "exact"):
        try:
            found = engine.cache.store.get_exact(bytes.fromhex(key))
        except ValueError:
            found = None
        entry_id = found[0] if found is not None else None
    return {"request_id": request_id, "tenant": tenant, "cache": rec.get("cache"), "namespace": rec.get("namespace"),
            "entry_id": entry_id, "similarity": rec.get("similarity"), "hit_score": rec.get("hit_score"),
            "saved_usd": rec.get("saved_usd")}


def feedback_endpoint(proxy: Proxy) -> Callable[[Request], Awaitable[Response]]:
    """The handler of ``POST /v1/feedback`` (the caller's key names the tenant)."""

    async def endpoint(request: Request) -> Response:
        return await _endpoint(proxy, request)

    return endpoint


async def _endpoint(proxy: Proxy, request: Request) -> Response:
    from engine.server import error_response

    try:
        tenant, _ = proxy.authenticate(request)
        raw = await proxy.read_body(request)
        if not raw:
            raise RequestError("empty body: expected {\"request_id\": ..., \"rating\": \"good\" | \"bad\"}")
        check_depth(raw, proxy.limits.max_json_depth)
        try:
            body = _decode(raw)
        except msgspec.ValidationError as exc:
            raise RequestError(f"invalid feedback: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise RequestError(f"malformed JSON: {exc}") from exc
        result = await apply_feedback(proxy.engine, body, tenant)
    except Exception as exc:
        return error_response(exc)
    return Response(_json.encode(result), media_type="application/json")


_MIN_EXACT = 20  # shadowed exact hits needed before the estimate is corrected by their false "bad" rate


def _corrected(observed: float, false_bad: float) -> float:
    """observed = true + (1 - true) x false_bad, solved for true."""
    return observed if false_bad >= 1.0 else min(1.0, max(0.0, (observed - false_bad) / (1.0 - false_bad)))


def quality(ledger: Ledger, *, tenant: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
    """Per (tenant, namespace): requests, hit rate, money saved, and the shadow + feedback estimate of the
    false-hit rate (the share of cached answers, served or would-be, judged wrong) with its 95 % Wilson
    interval. What ``/admin/stats`` (``quality``) and ``thrifty cache stats`` show."""
    from cache.adaptive import wilson_interval

    out = []
    for row in ledger.label_summary(tenant=tenant, since=since):
        labels = row.pop("labels")
        bad = sum(v["bad"] for v in labels.values())
        n = bad + sum(v["good"] for v in labels.values())
        lo, hi = wilson_interval(bad, n)
        requests = row["requests"] or 0
        exact = row.pop("exact_shadow", None)
        item = {**row, "hit_rate": (row["hits"] or 0) / requests if requests else 0.0,
                "labels": labels, "labelled": n,
                "false_hit_rate": bad / n if n else None,
                "false_hit_interval": [lo, hi] if n else None}
        if exact is not None and n and exact["good"] + exact["bad"] >= _MIN_EXACT:
            # The comparison's false "bad" rate, from shadowed exact hits, taken out of the estimate.
            noise = exact["bad"] / (exact["good"] + exact["bad"])
            item["comparison_false_bad"] = noise
            item["false_hit_rate_corrected"] = _corrected(bad / n, noise)
            item["false_hit_interval_corrected"] = [_corrected(lo, noise), _corrected(hi, noise)]
        out.append(item)
    out.sort(key=lambda r: (str(r["tenant"]), str(r["namespace"])))
    return out
