"""Shadow mode through the proxy: a would-be hit is not served, a fresh answer is, and the comparison of the
two lands in the ledger's labels table off the request path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from engine_support import ANSWER, base_config

from bench.fake_upstream import FakeUpstream, Reply
from engine.shadow import structured_match
from router.types import ChatResponse

ADMIN = "admin-secret-shadow"


def _ask(url: str, q: str, headers: dict[str, str] | None = None, **thrifty: object) -> httpx.Response:
    body: dict[str, object] = {"model": "auto", "messages": [{"role": "user", "content": q}]}
    if thrifty:
        body["thrifty"] = thrifty
    r = httpx.post(url + "/v1/chat/completions", json=body, headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def _wait_labels(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    """Labels land off the request path: wait (bounded) until ``n`` are in."""
    deadline = time.monotonic() + 20
    while engine.ledger.query("SELECT COUNT(*) AS n FROM labels")[0]["n"] < n:
        assert time.monotonic() < deadline, "shadow labels did not land"
        time.sleep(0.05)


def test_shadow_header_serves_fresh_and_records_labels(serve, upstream: FakeUpstream, tmp_path: Path,
                                                        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    live, engine = serve(base_config(tmp_path, upstream))
    q = "How do I reverse a list in Python?"
    assert _ask(live.url, q).headers["x-thrifty-cache"] == "miss"
    assert _ask(live.url, q).headers["x-thrifty-cache"] == "exact"
    n = len(upstream.requests)
    # Shadowed: the exact hit is not served; the same answer comes back fresh, and the verdict is "good".
    r = _ask(live.url, q, headers={"x-thrifty-shadow": "true"})
    assert r.headers["x-thrifty-cache"] == "miss" and r.headers["x-thrifty-provider"] == "fake"
    assert len(upstream.requests) == n + 1
    # A semantic would-be hit whose fresh answer says something else entirely: "bad".
    upstream.script(Reply(text="Photosynthesis turns light, water and carbon dioxide into sugar and oxygen."))
    r2 = _ask(live.url, "How can I reverse a list in Python?", shadow=True)
    assert r2.headers["x-thrifty-cache"] == "miss"
    assert r2.json()["choices"][0]["message"]["content"].startswith("Photosynthesis")
    _wait_labels(engine, 2)
    rows = {row["request_id"]: row for row in engine.ledger.query("SELECT * FROM labels")}
    first, second = rows[r.headers["x-thrifty-request-id"]], rows[r2.headers["x-thrifty-request-id"]]
    assert first["source"] == "shadow" and first["good"] == 1 and first["entry_id"]
    assert second["source"] == "shadow" and second["good"] == 0 and 0.8 < second["similarity"] < 1.0
    assert second["score"] < 0.9  # the cosine of the two answers, under the text threshold
    # The ledger maps each request to the entry it would have been served.
    led = engine.ledger.query("SELECT cache, entry_id FROM requests WHERE request_id = ?",
                                   (r2.headers["x-thrifty-request-id"],))[0]
    assert led == {"cache": "miss", "entry_id": second["entry_id"]}
    # /admin/stats: the shadow estimate of the false-hit rate, with its interval.
    stats = httpx.get(live.url + "/admin/stats", headers={"authorization": f"Bearer {ADMIN}"}).json()
    ns = next(row for row in stats["quality"] if row["namespace"] == "default/default")
    assert ns["labelled"] == 2 and ns["false_hit_rate"] == 0.5
    lo, hi = ns["false_hit_interval"]
    assert 0 < lo < 0.5 < hi < 1
    # Unshadowed, the cache still serves.
    assert _ask(live.url, q).headers["x-thrifty-cache"] == "exact"


def test_shadow_namespaces_from_config(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg = base_config(tmp_path, upstream, cache={"shadow": {"namespaces": ["faq"]}})
    live, engine = serve(cfg)
    q = "What is the boiling point of water at sea level?"
    for ns, second in (("faq", "miss"), ("other", "exact")):
        _ask(live.url, q, headers={"x-thrifty-namespace": ns})
        assert _ask(live.url, q, headers={"x-thrifty-namespace": ns}).headers["x-thrifty-cache"] == second
    # The request's own switch wins over the namespace's.
    assert _ask(live.url, q, headers={"x-thrifty-namespace": "faq", "x-thrifty-shadow": "false"}
                ).headers["x-thrifty-cache"] == "exact"
    _wait_labels(engine, 1)
    rows = engine.ledger.query("SELECT namespace, good FROM labels")
    assert rows == [{"namespace": "default/faq", "good": 1}]
    bad = httpx.post(live.url + "/v1/chat/completions", headers={"x-thrifty-shadow": "maybe"},
                     json={"messages": [{"role": "user", "content": q}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-thrifty-shadow"


def _tool_response(name: str, args: dict) -> ChatResponse:
    import msgspec

    return msgspec.convert({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [{
        "index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}}]},
        ChatResponse)


def _text_response(text: str) -> ChatResponse:
    import msgspec

    return msgspec.convert({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [{
        "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}, ChatResponse)


def test_structured_comparison_is_exact() -> None:
    a = _tool_response("get_weather", {"city": "Paris", "unit": "c"})
    same = _tool_response("get_weather", {"unit": "c", "city": "Paris"})  # key order does not matter
    other = _tool_response("get_weather", {"city": "Lyon", "unit": "c"})
    assert structured_match(a, same, False) is True
    assert structured_match(a, other, False) is False
    assert structured_match(a, _text_response(ANSWER), False) is False
    assert structured_match(_text_response('{"a": 1, "b": 2}'), _text_response('{"b": 2, "a": 1}'), True) is True
    assert structured_match(_text_response('{"a": 1}'), _text_response('{"a": 2}'), True) is False
    assert structured_match(_text_response("hello"), _text_response("hello there"), False) is None


def test_adaptive_explores_then_learns_through_the_proxy(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg = base_config(tmp_path, upstream, cache={"policy": "cosine",
                                                       "adaptive": {"enabled": True, "delta": 0.05, "explore_rate": 0.0,
                                                                    "bound": "request"}})
    live, engine = serve(cfg)
    q, para = "How do I reverse a list in Python?", "How can I reverse a list in Python?"
    assert _ask(live.url, q).headers["x-thrifty-cache"] == "miss"
    ro = {"x-thrifty-cache-mode": "read-only"}  # the fresh answers to the paraphrase are not stored
    r = _ask(live.url, para, headers=ro)  # a candidate, but no labels yet: explored (fresh answer, compared later)
    assert r.headers["x-thrifty-cache"] == "miss"
    _wait_labels(engine, 1)
    row = engine.ledger.query("SELECT source, good, entry_id FROM labels")[0]
    assert row["source"] == "shadow" and row["good"] == 1 and row["entry_id"]
    assert engine.cache.stats().explored == 1
    gate = engine.gate
    assert gate is not None and gate.summary("default/default")["labels"] == 1
    # With the namespace's evidence at that score, the same entry is served.
    engine.ledger.flush()
    hit_score = engine.ledger.query("SELECT hit_score FROM requests WHERE request_id = ?",
                                    (r.headers["x-thrifty-request-id"],))[0]["hit_score"]
    for i in range(300):
        gate.learn("default/default", 10_000 + i, hit_score, True)
    served = _ask(live.url, para, headers=ro)
    assert served.headers["x-thrifty-cache"] == "hit"


def test_near_miss_is_judged_and_then_served(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg = base_config(tmp_path, upstream, cache={"policy": "cosine", "near_miss": {"enabled": True, "margin": 0.2}})
    live, engine = serve(cfg)
    q, para = "How do I reverse a list in Python?", "Reversing a Python list: how?"  # cosine 0.90
    assert _ask(live.url, q).headers["x-thrifty-cache"] == "miss"
    ro = {"x-thrifty-cache-mode": "read-only"}  # the paraphrase's fresh answer is not stored
    first = _ask(live.url, para, headers=ro)  # under the threshold: a miss, and a near miss to judge later
    assert first.headers["x-thrifty-cache"] == "miss"
    _wait_labels(engine, 1)
    row = engine.ledger.query("SELECT source, good, similarity FROM labels")[0]
    assert row["source"] == "nearmiss" and row["good"] == 1 and row["similarity"] < 0.96
    # Approved: a request as close to that entry is served from it now.
    again = _ask(live.url, para, headers=ro)
    assert again.headers["x-thrifty-cache"] == "hit"
    assert len(engine.ledger.query("SELECT * FROM labels")) == 1  # a served hit is not judged again


def test_judge_model_compares_off_the_request_path(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg = base_config(tmp_path, upstream, cache={
        "shadow": {"namespaces": ["*"], "compare": "judge", "judge_model": "gpt-4o-mini"}})
    live, engine = serve(cfg)
    q = "What is the tallest mountain in Europe?"
    upstream.script(Reply(text="Mont Blanc."), Reply(text="Mount Elbrus, 5642 m."), Reply(text="NO"))
    _ask(live.url, q, shadow=False)  # stored: "Mont Blanc."
    r = _ask(live.url, q)  # shadowed: the fresh answer differs, the judge says NO
    assert r.json()["choices"][0]["message"]["content"].startswith("Mount Elbrus")
    _wait_labels(engine, 1)
    row = engine.ledger.query("SELECT source, good, detail FROM labels")[0]
    assert row["source"] == "judge" and row["good"] == 0 and "gpt-4o-mini" in row["detail"]
    judge_req = upstream.requests[-1].body
    assert judge_req["model"].endswith("gpt-4o-mini") and "Mont Blanc." in judge_req["messages"][0]["content"]


def test_cache_stats_cli_shows_the_false_hit_estimate(serve, upstream: FakeUpstream, tmp_path: Path,
                                                      capsys) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from engine.cli import main

    cfg = base_config(tmp_path, upstream)
    live, engine = serve(cfg)
    q = "What is the speed of light in vacuum?"
    _ask(live.url, q)
    _ask(live.url, q, shadow=True)
    _wait_labels(engine, 1)
    engine.ledger.flush()
    path = tmp_path / "thrifty.yaml"
    path.write_text(yaml.safe_dump(cfg))
    live.stop()
    assert main(["--config", str(path), "cache", "stats"]) == 0
    out = json.loads(capsys.readouterr().out)
    ns = out["namespaces"][0]
    assert ns["namespace"] == "default/default" and ns["labelled"] == 1 and ns["false_hit_rate"] == 0.0
    assert ns["false_hit_interval_95"][1] > 0.5 and ns["requests"] == 2


def test_shadowed_stream_is_compared_after_its_last_chunk(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = serve(base_config(tmp_path, upstream))
    q = "Give me one fun fact about octopuses."
    _ask(live.url, q)
    with httpx.stream("POST", live.url + "/v1/chat/completions", headers={"x-thrifty-shadow": "true"}, timeout=30,
                      json={"model": "auto", "stream": True, "messages": [{"role": "user", "content": q}]}) as r:
        assert r.headers["x-thrifty-cache"] == "miss"
        body = "".join(r.iter_text())
    assert "[DONE]" in body
    _wait_labels(engine, 1)
    row = engine.ledger.query("SELECT source, good FROM labels")[0]
    assert row == {"source": "shadow", "good": 1}


def test_adaptive_with_the_default_learned_policy(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = serve(base_config(tmp_path, upstream, cache={"adaptive": {"enabled": True}}))
    assert engine.gate is not None and engine.gate.floor == 0.30  # probability units
    _ask(live.url, "How do I reverse a list in Python?")
    r = _ask(live.url, "How can I reverse a list in Python?", headers={"x-thrifty-cache-mode": "read-only"})
    assert r.headers["x-thrifty-cache"] == "miss"  # no labels yet: explored, not served
    _wait_labels(engine, 1)
    engine.ledger.flush()
    row = engine.ledger.query("SELECT hit_score, entry_id FROM requests WHERE request_id = ?",
                              (r.headers["x-thrifty-request-id"],))[0]
    assert 0.3 <= row["hit_score"] <= 1.0 and row["entry_id"]  # the verifier's probability, kept for tuning
