"""Dispatch outcomes as the caller sees them through the proxy (issues 13 and 11 #4), with the openai client
and raw HTTP: open circuits are a 503 with Retry-After, a provider's 4xx keeps its code, per-request
deadlines are validated and applied, a stream's cost is ``pending`` until known, a continued stream is
one answer to the caller and two attempts in the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from engine_support import base_config

from bench.fake_upstream import FakeUpstream, Reply

FULL = "".join(f"tok{i:02d} " for i in range(60))
MSG = [{"role": "user", "content": "Count to sixty for me."}]


def _cfg(tmp_path: Path, upstream: FakeUpstream, **extra: object) -> dict:
    cfg = base_config(tmp_path, upstream, **extra)
    cfg["providers"][0].update({"breaker": {"consecutive_failures": 1, "cooldown": 30},
                                "timeouts": {"ttft": 2.0, "stall": 0.5, "read": 2.0}})
    return cfg


def test_open_circuits_are_a_503_with_retry_after(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(_cfg(tmp_path, upstream, routing={"max_candidates": 1}))
    body = {"model": "gpt-4o-mini", "messages": MSG, "thrifty": {"cache_mode": "off"}}
    with httpx.Client(base_url=live.url, timeout=30) as h:
        upstream.script(*[Reply.error_status(500, "boom")] * 2)
        assert h.post("/v1/chat/completions", json=body).status_code == 502  # the failure opens the circuit
        r = h.post("/v1/chat/completions", json=body)
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["type"] == "service_unavailable" and err["code"] == "circuit_open"
        assert "fake/gpt-4o-mini" in err["message"]
        assert 1 <= int(r.headers["retry-after"]) <= 30
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="sk-x", max_retries=0)
    with pytest.raises(openai.InternalServerError) as info:  # a server-side status: SDKs retry it
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    assert info.value.status_code == 503


def test_provider_4xx_keeps_code_type_and_param(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(_cfg(tmp_path, upstream))
    rejected = {"error": {"message": "Your request was rejected by the safety system.",
                          "type": "invalid_request_error", "param": "messages", "code": "content_policy_violation"}}
    upstream.script(Reply(status=400, error=rejected))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="sk-x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # type: ignore[arg-type]
    assert info.value.code == "content_policy_violation" and info.value.param == "messages"
    assert "safety system" in info.value.message


def test_bad_deadline_controls_are_a_400(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(_cfg(tmp_path, upstream))
    with httpx.Client(base_url=live.url) as h:
        for header in ("x-thrifty-ttft-s", "x-thrifty-stall-s", "x-thrifty-deadline-s"):
            for value in ("nan", "inf", "-1", "0", "soon"):
                r = h.post("/v1/chat/completions", json={"messages": MSG}, headers={header: value})
                assert r.status_code == 400, (header, value, r.text)
                assert header in r.text
            field = header.removeprefix("x-thrifty-").replace("-", "_")
            r = h.post("/v1/chat/completions", content=b'{"messages": [{"role": "user", "content": "hi"}], '
                       b'"thrifty": {"' + field.encode() + b'": -3}}', headers={"content-type": "application/json"})
            assert r.status_code == 400 and field in r.json()["error"]["message"]
        assert upstream.requests == []  # nothing refused reached the upstream


def test_callers_ttft_falls_back_sooner(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(_cfg(tmp_path, upstream, routing={"max_candidates": 2}))
    upstream.script(Reply(delay=1.0))  # within the operator's 2 s TTFT, not the caller's 0.2 s
    with httpx.Client(base_url=live.url, timeout=30) as h, h.stream(
            "POST", "/v1/chat/completions", json={"messages": MSG, "stream": True},
            headers={"x-thrifty-ttft-s": "0.2", "x-thrifty-cache-mode": "off"}) as r:
        assert r.status_code == 200
        body = r.read().decode()
    assert "[DONE]" in body and len(upstream.requests) == 2  # the first timed out, the second answered


def test_stream_cost_header_is_pending_with_the_cache_off(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(_cfg(tmp_path, upstream))
    with httpx.Client(base_url=live.url, timeout=30) as h:
        for mode in ("off", "on"):
            with h.stream("POST", "/v1/chat/completions", json={"messages": MSG, "stream": True},
                          headers={"x-thrifty-cache-mode": mode}) as r:
                assert r.headers["x-thrifty-cost-usd"] == "pending", mode
                text = r.read().decode()
            cost = json.loads(text.split(": thrifty ", 1)[1].split("\n", 1)[0])["cost_usd"]
            assert cost > 0


def test_cut_stream_is_continued_and_both_attempts_are_billed(serve, upstream: FakeUpstream,
                                                              tmp_path: Path) -> None:
    live, engine = serve(_cfg(tmp_path, upstream, routing={"max_candidates": 2}))
    upstream.script(Reply(text=FULL, cut_after=21), Reply(text=FULL, continues=True))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="sk-x", max_retries=0)
    stream = client.chat.completions.create(model="auto", messages=MSG, stream=True)  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == FULL
    again = client.chat.completions.with_raw_response.create(model="auto", messages=MSG)  # type: ignore[arg-type]
    assert again.headers["x-thrifty-cache"] == "miss"  # a stitched answer is never stored
    engine.ledger.flush()
    row = engine.ledger.query("SELECT status, attempts, cost_usd, completion_tokens, cost_estimated FROM requests "
                              "ORDER BY ts")[0]
    assert row["status"] == 200 and row["attempts"] == 3  # the first ok, its break, the continuation
    assert row["cost_usd"] > 0 and row["completion_tokens"] >= 60 and row["cost_estimated"] == 1


def test_a_skipped_bad_event_is_counted_in_metrics(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(_cfg(tmp_path, upstream))
    upstream.script(Reply(text=FULL, bad_events=(4,)))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="sk-x", max_retries=0)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == FULL
    metrics = httpx.get(live.url + "/metrics").text
    assert 'thrifty_stream_bad_events_total{deployment="fake/gpt-4o-mini"} 1.0' in metrics
