"""The OpenAI-compatible proxy, driven by the official ``openai`` client and raw HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest
from engine_support import ANSWER, base_config

from bench.fake_upstream import FakeUpstream, Reply
from router.types import FunctionCall, ToolCall

ADMIN = "admin-secret-for-tests"

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def _client(url: str, key: str = "sk-anything") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def test_openai_client_sync_miss_then_exact_hit(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(base_config(tmp_path, upstream))
    client = _client(live.url)
    msgs = [{"role": "user", "content": "What is the boiling point of water at sea level in Celsius?"}]
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=msgs)
    first = raw.parse()
    assert first.choices[0].message.content == ANSWER
    assert raw.headers["x-thrifty-cache"] == "miss"
    assert raw.headers["x-thrifty-provider"] == "fake"
    assert float(raw.headers["x-thrifty-cost-usd"]) > 0
    for h in ("x-thrifty-model", "x-thrifty-overhead-ms", "x-thrifty-request-id"):
        assert raw.headers[h]
    raw2 = client.chat.completions.with_raw_response.create(model="auto", messages=msgs)
    assert raw2.headers["x-thrifty-cache"] == "exact"
    assert raw2.parse().choices[0].message.content == ANSWER
    assert float(raw2.headers["x-thrifty-cost-usd"]) == 0
    assert len(upstream.requests) == 1


def test_semantic_hit_and_near_miss(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(base_config(tmp_path, upstream))
    client = _client(live.url)
    ask = lambda q: client.chat.completions.with_raw_response.create(  # noqa: E731
        model="auto", messages=[{"role": "user", "content": q}])
    assert ask("How do I reverse a list in Python?").headers["x-thrifty-cache"] == "miss"
    assert ask("How can I reverse a list in Python?").headers["x-thrifty-cache"] == "hit"
    assert ask("How do I reverse a list in JavaScript?").headers["x-thrifty-cache"] == "miss"


@pytest.mark.anyio
async def test_openai_client_async_and_streaming(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(base_config(tmp_path, upstream))
    client = openai.AsyncOpenAI(base_url=live.url + "/v1", api_key="sk-x", max_retries=0)
    msgs = [{"role": "user", "content": "Name three primary colors."}]
    r = await client.chat.completions.create(model="auto", messages=msgs)
    assert r.choices[0].message.content == ANSWER
    stream_msgs = [{"role": "user", "content": "Write one sentence about the sea."}]
    for expected in ("miss", "exact"):
        raw = await client.chat.completions.with_raw_response.create(
            model="auto", messages=stream_msgs, stream=True, stream_options={"include_usage": True})
        assert raw.headers["x-thrifty-cache"] == expected
        parts, finish, usage = [], None, None
        async for chunk in raw.parse():
            for c in chunk.choices:
                parts.append(c.delta.content or "")
                finish = c.finish_reason or finish
            usage = chunk.usage or usage
        assert "".join(parts) == ANSWER
        assert finish == "stop"
        assert usage is not None and usage.completion_tokens > 0
    await client.close()


def test_tools_round_trip(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(base_config(tmp_path, upstream))
    client = _client(live.url)
    call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    upstream.script(Reply(tool_calls=[call]), Reply(tool_calls=[call]))
    msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
    r = client.chat.completions.create(model="auto", messages=msgs, tools=TOOLS)
    tc = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls"
    assert tc and tc[0].function.name == "get_weather" and json.loads(tc[0].function.arguments) == {"city": "Paris"}
    assert upstream.requests[-1].body["tools"][0]["function"]["name"] == "get_weather"
    # streamed tool calls arrive as deltas that add up to the same call
    stream = client.chat.completions.create(model="auto", messages=[*msgs, {"role": "user", "content": "again"}],
                                            tools=TOOLS, stream=True)
    name, args = "", ""
    for chunk in stream:
        for c in chunk.choices:
            for d in c.delta.tool_calls or ():
                name += d.function.name or "" if d.function else ""
                args += d.function.arguments or "" if d.function else ""
    assert name == "get_weather" and json.loads(args) == {"city": "Paris"}


def test_controls_by_header_and_body(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(base_config(tmp_path, upstream))
    body = {"model": "auto", "messages": [{"role": "user", "content": "Define entropy in one line."}]}
    with httpx.Client(base_url=live.url) as h:
        assert h.post("/v1/chat/completions", json=body).headers["x-thrifty-cache"] == "miss"
        off = h.post("/v1/chat/completions", json=body, headers={"x-thrifty-cache-mode": "off"})
        assert off.headers["x-thrifty-cache"] == "bypass"
        other_ns = h.post("/v1/chat/completions", json=body, headers={"x-thrifty-namespace": "other"})
        assert other_ns.headers["x-thrifty-cache"] == "miss"
        in_body = h.post("/v1/chat/completions", json={**body, "thrifty": {"namespace": "other"}})
        assert in_body.headers["x-thrifty-cache"] == "exact"
        sys_prompt = {"model": "auto", "messages": [{"role": "system", "content": "Answer like a pirate."},
                                                    *body["messages"]]}
        assert h.post("/v1/chat/completions", json=sys_prompt).headers["x-thrifty-cache"] == "miss"
        pinned = h.post("/v1/chat/completions", json={**body, "model": "gpt-4o-mini"})
        assert pinned.headers["x-thrifty-cache"] == "miss"  # another model is another partition
        assert pinned.headers["x-thrifty-model"] == "gpt-4o-mini"
        assert upstream.requests[-1].body["model"] == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "malformed JSON"),
        (b'{"messages": "hello"}', 400, "messages"),
        (b'{"messages": [{"role": "wizard", "content": "hi"}]}', 400, "role"),
        (b'{"model": "auto"}', 400, "messages"),
        (b'{"messages": []}', 400, "at least one message"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', 400, "temperature"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "frobnicate": 1}', 400, "frobnicate"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "model": "no-such-model"}', 400, "no-such-model"),
        (b"", 400, "empty request body"),
    ],
)
def test_bad_input_gets_a_clear_error(serve, upstream: FakeUpstream, tmp_path: Path, body: bytes, status: int,
                                      needle: str) -> None:
    live, _ = serve(base_config(tmp_path, upstream))
    with httpx.Client(base_url=live.url) as h:
        r = h.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert needle in err["message"]
        assert err["type"] == "invalid_request_error"
        assert h.get("/healthz").status_code == 200


def test_oversized_body_and_keys(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    cfg = base_config(tmp_path, upstream, tenants={"acme": {"keys": [{"name": "k1", "key": "sk-acme"}]}})
    live, _ = serve(cfg)
    ok = {"messages": [{"role": "user", "content": "hi there"}]}
    with httpx.Client(base_url=live.url, timeout=30) as h:
        big = b'{"messages": [{"role": "user", "content": "' + b"x" * (10 * 1024 * 1024) + b'"}]}'
        r = h.post("/v1/chat/completions", content=big, headers={"authorization": "Bearer sk-acme"})
        assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]["message"]
        r = h.post("/v1/chat/completions", json=ok, headers={"authorization": "Bearer sk-wrong"})
        assert r.status_code == 401 and r.json()["error"]["message"] == "invalid virtual key"
        assert h.post("/v1/chat/completions", json=ok).status_code == 401
        assert h.post("/v1/chat/completions", json=ok, headers={"authorization": "Bearer sk-acme"}).status_code == 200
        assert h.get("/healthz").status_code == 200


def test_upstream_failures_map_to_status(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = serve(base_config(tmp_path, upstream, routing={"max_candidates": 2}))
    with httpx.Client(base_url=live.url) as h:
        upstream.script(*[Reply.error_status(503, "overloaded")] * 8)
        r = h.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q1"}]})
        assert r.status_code == 502, r.text
        err = r.json()["error"]
        assert "overloaded" in json.dumps(err) and len(err["details"]) >= 2
        upstream.reset()
        upstream.script(Reply.error_status(400, "bad parameter: top_p"))
        r = h.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q2"}]})
        assert r.status_code == 400 and "bad parameter: top_p" in r.json()["error"]["message"]
    engine.ledger.flush()
    rows = engine.ledger.query("SELECT status, cache FROM requests ORDER BY ts")
    assert [r["status"] for r in rows] == [502, 400]
    assert engine.cache.stats().entries == 0  # nothing failed is cached


def test_models_healthz_metrics(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(base_config(tmp_path, upstream))
    client = _client(live.url)
    ids = [m.id for m in client.models.list()]
    assert "auto" in ids and len(ids) > 20
    client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "ping"}])
    with httpx.Client(base_url=live.url) as h:
        text = h.get("/metrics").text
    assert 'thrifty_requests_total{cache="miss"' in text
    assert "thrifty_stage_seconds_bucket" in text and "thrifty_spend_usd_total" in text


def test_admin_api(serve, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    live, _ = serve(base_config(tmp_path, upstream, tenants={"t1": {"keys": [{"name": "k", "key": "sk-t1"}]}}))
    auth = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=live.url) as h:
        assert h.get("/admin/stats").status_code == 401
        assert h.get("/admin/stats", headers={"authorization": "Bearer nope"}).status_code == 401
        for q in ("one", "two", "three"):
            h.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": f"question {q}?"}]},
                   headers={"authorization": "Bearer sk-t1"})
        cfg = h.get("/admin/config", headers=auth).json()
        assert cfg["tenants"]["t1"]["keys"][0]["key"] == "***"
        stats = h.get("/admin/stats", headers=auth).json()
        assert stats["totals"]["requests"] == 3 and stats["cache"]["entries"] == 3
        export = h.get("/admin/cache/export", headers=auth)
        assert len(export.content.splitlines()) == 4  # header + 3 entries
        assert h.post("/admin/cache/purge", headers=auth, json={"tenant": "t1"}).json() == {"purged": 3}
        assert h.post("/admin/cache/import", headers=auth, content=export.content).json() == {"imported": 3}
        assert h.post("/admin/cache/purge", headers=auth, json={}).status_code == 400
        rules = [{"task": "code", "only": ["gpt-4o-mini"], "name": "code-cheap"}]
        assert h.put("/admin/routing/rules", headers=auth, json=rules).status_code == 200
        assert h.get("/admin/routing/rules", headers=auth).json()[0]["name"] == "code-cheap"
        bad = h.put("/admin/routing/rules", headers=auth, json=[{"only": ["no-such-model"]}])
        assert bad.status_code == 400 and "no-such-model" in bad.json()["error"]["message"]


def test_total_deadline_is_a_504_naming_the_attempts(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(base_config(tmp_path, upstream, dispatch={"deadline_s": 0.5}))
    upstream.script(*[Reply(delay=3.0)] * 4)
    with httpx.Client(base_url=live.url, timeout=30) as h:
        r = h.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "slow one?"}]})
    assert r.status_code == 504, r.text
    err = r.json()["error"]
    assert err["code"] == "deadline_exceeded" and err["details"]
    assert r.elapsed.total_seconds() < 2.5
