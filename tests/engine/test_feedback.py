"""Feedback through the proxy: a cached answer rated bad is withdrawn and never served again; tenancy."""

from __future__ import annotations

from pathlib import Path

import httpx
from engine_support import base_config

from bench.fake_upstream import FakeUpstream, Reply

KEY_A, KEY_B = "sk-tenant-a", "sk-tenant-b"
WRONG = "Paris is the capital of Germany."
RIGHT = "Berlin is the capital of Germany."


def _config(tmp_path: Path, upstream: FakeUpstream) -> dict:
    return base_config(tmp_path, upstream, tenants={
        "a": {"keys": [{"name": "ka", "key": KEY_A}]},
        "b": {"keys": [{"name": "kb", "key": KEY_B}]},
    })


def _ask(url: str, key: str, q: str) -> httpx.Response:
    r = httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                   json={"model": "auto", "messages": [{"role": "user", "content": q}]}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def _rate(url: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/v1/feedback", headers={"authorization": f"Bearer {key}"}, json=body, timeout=30)


def test_cached_answer_rated_bad_is_never_served_again(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = serve(_config(tmp_path, upstream))
    upstream.script(Reply(text=WRONG))  # the first answer is wrong; every later upstream answer is RIGHT
    upstream.script(*[Reply(text=RIGHT) for _ in range(10)])
    q, para = "What is the capital of Germany?", "What's the capital of Germany?"
    assert _ask(live.url, KEY_A, q).headers["x-thrifty-cache"] == "miss"
    hit = _ask(live.url, KEY_A, para)
    assert hit.headers["x-thrifty-cache"] == "hit"
    assert hit.json()["choices"][0]["message"]["content"] == WRONG
    rid = hit.headers["x-thrifty-request-id"]

    r = _rate(live.url, KEY_A, {"request_id": rid, "rating": "bad"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["withdrawn"] is True and body["good"] is False and body["entry_id"]

    # Neither the exact request, the paraphrase nor another wording gets the withdrawn answer again.
    for ask in (q, para, "Which city is the capital of Germany?", q, para):
        r = _ask(live.url, KEY_A, ask)
        assert r.json()["choices"][0]["message"]["content"] != WRONG, (ask, r.headers["x-thrifty-cache"])
    rows = engine.ledger.query("SELECT source, good, entry_id, namespace FROM labels WHERE request_id = ?", (rid,))
    assert rows == [{"source": "feedback", "good": 0, "entry_id": body["entry_id"], "namespace": "a/default"}]
    assert _rate(live.url, KEY_A, {"request_id": rid, "rating": "good"}).status_code == 409  # one rating per request


def test_feedback_is_tenant_scoped_and_validated(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = serve(_config(tmp_path, upstream))
    q = "How many legs does a spider have?"
    _ask(live.url, KEY_A, q)
    hit = _ask(live.url, KEY_A, q)
    assert hit.headers["x-thrifty-cache"] == "exact"
    rid = hit.headers["x-thrifty-request-id"]

    other = _rate(live.url, KEY_B, {"request_id": rid, "rating": "bad"})
    unknown = _rate(live.url, KEY_B, {"request_id": "0" * 32, "rating": "bad"})
    assert other.status_code == unknown.status_code == 404
    assert other.json()["error"]["type"] == unknown.json()["error"]["type"] == "not_found_error"
    # No existence oracle: the two answers differ only in the id the caller sent.
    assert other.json()["error"]["message"].replace(rid, "ID") == unknown.json()["error"]["message"].replace("0" * 32, "ID")
    assert _ask(live.url, KEY_A, q).headers["x-thrifty-cache"] == "exact"  # B's attempt withdrew nothing
    assert engine.ledger.query("SELECT COUNT(*) AS n FROM labels")[0]["n"] == 0

    assert httpx.post(live.url + "/v1/feedback", json={"request_id": rid, "rating": "bad"}).status_code == 401
    for bad_body, param in (({"request_id": rid, "rating": "meh"}, None), ({"request_id": rid}, "rating"),
                            ({"request_id": rid, "score": 1.5}, "score"), ({"rating": "good"}, None),
                            ({"request_id": rid, "rating": "good", "extra": 1}, None)):
        r = _rate(live.url, KEY_A, bad_body)
        assert r.status_code == 400, (bad_body, r.text)
        if param:
            assert r.json()["error"]["param"] == param
    good = _rate(live.url, KEY_A, {"request_id": rid, "score": 0.9, "correct_answer": "eight"})
    assert good.status_code == 200 and good.json()["withdrawn"] is False and good.json()["good"] is True
    detail = engine.ledger.query("SELECT detail FROM labels WHERE request_id = ?", (rid,))[0]["detail"]
    assert "eight" not in detail  # content is kept only with log_content on


def test_engine_feedback_embedded(tmp_path: Path, upstream: FakeUpstream, minilm) -> None:  # type: ignore[no-untyped-def]
    from engine import Engine

    engine = Engine.from_config(base_config(tmp_path, upstream), encoder=minilm)
    try:
        msgs = [{"role": "user", "content": "Name a prime number between 10 and 20."}]
        engine.complete_sync({"messages": msgs})
        done = engine.complete_sync({"messages": msgs})
        assert done.meta.cache == "exact"
        result = engine.feedback_sync(done.meta.request_id, rating="bad")
        assert result.withdrawn
        assert engine.complete_sync({"messages": msgs}).meta.cache == "miss"
    finally:
        engine.close()


def test_quality_estimate_is_corrected_by_shadowed_exact_hits(tmp_path: Path) -> None:
    from engine.feedback import quality
    from engine.ledger import Label, Ledger, UsageRecord

    led = Ledger(tmp_path / "ledger.sqlite3", journal=False)
    rows = []
    for i in range(40):  # shadowed exact hits: hit_score NULL; 2 of them judged (wrongly) bad
        rows.append((UsageRecord(request_id=f"x{i}", ts=1.0, tenant="t", cache="miss", status=200, namespace="t/ns",
                                 entry_id=1, similarity=1.0), i >= 2))
    for i in range(100):  # shadowed semantic hits: 10 judged bad
        rows.append((UsageRecord(request_id=f"s{i}", ts=1.0, tenant="t", cache="miss", status=200, namespace="t/ns",
                                 entry_id=2, similarity=0.97, hit_score=0.97), i >= 10))
    for rec, _ in rows:
        led.record(rec)
    led.flush()
    for rec, good in rows:
        led.add_label(Label(request_id=rec.request_id, tenant="t", namespace="t/ns", source="shadow", good=good,
                            entry_id=rec.entry_id, similarity=rec.similarity))
    (q,) = quality(led)
    led.close()
    assert q["labelled"] == 140 and q["false_hit_rate"] == 12 / 140
    assert q["comparison_false_bad"] == 2 / 40
    assert q["false_hit_rate_corrected"] == (12 / 140 - 0.05) / 0.95
    lo, hi = q["false_hit_interval_corrected"]
    assert lo < q["false_hit_rate_corrected"] < hi


def test_answer_served_while_its_write_was_in_flight_is_withdrawn(tmp_path: Path, upstream: FakeUpstream,
                                                                  minilm) -> None:  # type: ignore[no-untyped-def]
    import threading

    from engine import Engine

    engine = Engine.from_config(base_config(tmp_path, upstream), encoder=minilm)
    try:
        gate = threading.Event()
        real_insert = engine.parts.insert

        def slow_insert(*a, **kw):  # type: ignore[no-untyped-def]
            gate.wait(10)  # hold the cache write: the next identical request is served from the in-flight map
            return real_insert(*a, **kw)

        engine.parts.insert = slow_insert  # type: ignore[method-assign]
        msgs = [{"role": "user", "content": "Name the largest planet of the solar system."}]
        engine.complete_sync({"messages": msgs})
        done = engine.complete_sync({"messages": msgs})
        assert done.meta.cache == "exact"
        gate.set()
        result = engine.feedback_sync(done.meta.request_id, rating="bad")
        assert result.withdrawn and result.entry_id
        assert engine.complete_sync({"messages": msgs}).meta.cache == "miss"
    finally:
        engine.close()
