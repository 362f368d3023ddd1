"""OpenTelemetry traces (issue 19 #1): a real OTLP receiver on 127.0.0.1 (tests/otlp_receiver.py, decoding
``ExportTraceServiceRequest`` with opentelemetry-proto) sees one trace per request, continuing the caller's
``traceparent``, with stage spans, one CLIENT span per upstream attempt, the GenAI attributes and thrifty's;
the upstream receives a ``traceparent`` naming its attempt's span."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from engine_support import base_config
from otlp_receiver import GrpcReceiver, HttpReceiver, Span

from bench.fake_upstream import FakeUpstream, Reply
from engine.tracing import parse_traceparent

SERVER, CLIENT = 2, 3  # OTLP span kinds


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "thrifty-test")
    yield r
    r.stop()


def _cfg(tmp_path: Path, upstream: FakeUpstream, **extra: object) -> dict:
    return base_config(tmp_path, upstream, **{"tracing": {"enabled": True}, "routing": {"max_candidates": 2}, **extra})


def _caller() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def _client(url: str, traceparent: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0,
                         default_headers={"traceparent": traceparent})


def _one_request(spans: list[Span]) -> tuple[Span, dict[str, Span], list[Span]]:
    roots = [s for s in spans if s.kind == SERVER]
    assert len(roots) == 1, [s.name for s in spans]
    root = roots[0]
    stages = {s.name: s for s in spans if s.parent_id == root.span_id and s.name.startswith("thrifty.")}
    attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.attrs["thrifty.attempt.index"])
    for s in spans:  # every span lies within the request's
        assert root.start_ns <= s.start_ns <= s.end_ns <= root.end_ns, s.name
    return root, stages, attempts


def _upstream_traceparents(upstream: FakeUpstream) -> list[str]:
    return [r.headers.get("traceparent", "") for r in upstream.requests]


def test_miss_with_retry_and_fallback_is_one_trace(serve, upstream: FakeUpstream, receiver: HttpReceiver,
                                                   tmp_path: Path) -> None:
    live, engine = serve(_cfg(tmp_path, upstream))
    trace_id, caller_span, tp = _caller()
    upstream.script(*[Reply.error_status(503, "overloaded")] * 2)  # both tries of the first deployment
    done = _client(live.url, tp).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Name three prime numbers."}])
    assert done.headers["x-thrifty-cache"] == "miss"
    spans = receiver.wait_for(trace_id, count=11)
    root, stages, attempts = _one_request(spans)
    assert root.parent_id == caller_span  # the caller's trace, continued
    assert root.name == "chat auto" and root.resource["service.name"] == "thrifty-test"
    a = root.attrs
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "auto"
    assert a["gen_ai.response.model"] == done.headers["x-thrifty-model"]
    assert a["gen_ai.provider.name"] == "fake"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["thrifty.cache.outcome"] == "miss" and a["thrifty.tenant"] == "default"
    assert a["thrifty.cost_usd"] == pytest.approx(float(done.headers["x-thrifty-cost-usd"]), rel=1e-6)
    assert a["thrifty.saved_usd"] == 0 and a["thrifty.attempts"] == 3
    assert a["http.response.status_code"] == 200
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a  # log_content is off
    assert {"thrifty.scope", "thrifty.exact", "thrifty.encode", "thrifty.search", "thrifty.route",
            "thrifty.dispatch", "thrifty.store"} <= set(stages)
    assert "thrifty.verify" not in stages  # an empty cache has no candidate: no verifier ran
    dispatch = stages["thrifty.dispatch"]
    assert [s.parent_id for s in attempts] == [dispatch.span_id] * 3
    first, second, third = attempts
    assert first.attrs["thrifty.deployment"] == second.attrs["thrifty.deployment"]
    assert third.attrs["thrifty.deployment"] != first.attrs["thrifty.deployment"]
    assert third.attrs["thrifty.deployment"].endswith(done.headers["x-thrifty-model"])
    assert first.attrs["thrifty.attempt.outcome"] == "retried" and second.attrs["thrifty.attempt.outcome"] == "fell_back"
    for failed in (first, second):
        assert failed.attrs["http.response.status_code"] == 503 and failed.status_code == 2  # ERROR
        assert failed.attrs["error.type"] and "overloaded" in failed.attrs["thrifty.retry.reason"]
    assert third.attrs["thrifty.attempt.outcome"] == "ok" and third.status_code != 2
    assert third.attrs["gen_ai.provider.name"] == "fake" and third.attrs["gen_ai.request.model"]
    # Each upstream call carried the trace, naming its own attempt's span.
    assert _upstream_traceparents(upstream) == [f"00-{trace_id}-{s.span_id}-01" for s in attempts]
    assert len({s.trace_id for s in receiver.spans}) == 1  # one request, one trace
    assert engine.tracing is not None


def test_semantic_hit_is_a_trace_without_attempts(serve, upstream: FakeUpstream, receiver: HttpReceiver,
                                                  tmp_path: Path) -> None:
    live, engine = serve(_cfg(tmp_path, upstream))
    _, _, tp1 = _caller()
    _client(live.url, tp1).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "How do I reverse a list in Python?"}])
    asyncio.run(engine.flush())  # the answer is stored (off the request path)
    trace_id, caller_span, tp2 = _caller()
    done = _client(live.url, tp2).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "How can I reverse a list in Python?"}])
    assert done.headers["x-thrifty-cache"] == "hit"
    spans = receiver.wait_for(trace_id, count=5)
    root, stages, attempts = _one_request(spans)
    assert root.parent_id == caller_span and attempts == []
    assert {"thrifty.scope", "thrifty.exact", "thrifty.encode", "thrifty.search", "thrifty.verify"} == set(stages)
    # The verifier's time is its own stage, right after the index search (and in the ledger's stages).
    assert stages["thrifty.verify"].start_ns == stages["thrifty.search"].end_ns
    assert stages["thrifty.verify"].end_ns > stages["thrifty.verify"].start_ns
    asyncio.run(engine.flush())
    engine.ledger.flush()
    row = engine.ledger.query("SELECT stages FROM requests WHERE cache = 'hit'")[0]
    assert set(json.loads(row["stages"])) == {"scope", "exact", "encode", "search", "verify"}
    a = root.attrs
    assert a["thrifty.cache.outcome"] == "hit" and a["gen_ai.provider.name"] == "cache"
    assert a["thrifty.saved_usd"] > 0 and a["thrifty.cost_usd"] == 0
    assert 0 < a["thrifty.similarity"] < 1
    assert len(upstream.requests) == 1  # only the miss went upstream


def test_streamed_answer_with_content_logging(serve, upstream: FakeUpstream, receiver: HttpReceiver,
                                              tmp_path: Path) -> None:
    live, _ = serve(_cfg(tmp_path, upstream, log_content=True))
    trace_id, caller_span, tp = _caller()
    question = "Write one sentence about tracing."
    stream = _client(live.url, tp).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": question}], stream=True,
        stream_options={"include_usage": True})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    spans = receiver.wait_for(trace_id, count=7)
    root, stages, attempts = _one_request(spans)
    assert root.parent_id == caller_span
    assert {"thrifty.first_chunk", "thrifty.stream"} <= set(stages)
    assert stages["thrifty.stream"].attrs["thrifty.stream.complete"] is True
    assert len(attempts) == 1 and attempts[0].parent_id == stages["thrifty.first_chunk"].span_id
    a = root.attrs
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["thrifty.cache.outcome"] == "miss"
    assert a["gen_ai.usage.output_tokens"] > 0 and a["thrifty.cost_usd"] > 0
    assert json.loads(a["gen_ai.input.messages"])[0]["content"] == question  # log_content is on
    assert json.loads(a["gen_ai.output.messages"])[0]["content"] == text
    assert _upstream_traceparents(upstream) == [f"00-{trace_id}-{attempts[0].span_id}-01"]


def test_grpc_export(serve, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    r = GrpcReceiver()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        live, _ = serve(_cfg(tmp_path, upstream))
        trace_id, caller_span, tp = _caller()
        _client(live.url, tp).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello over grpc"}])
        root, stages, attempts = _one_request(r.wait_for(trace_id, count=8))
        assert root.parent_id == caller_span and root.attrs["thrifty.cache.outcome"] == "miss"
        assert len(attempts) == 1 and "thrifty.dispatch" in stages
    finally:
        r.stop()


def test_sampler_and_malformed_traceparent(serve, upstream: FakeUpstream, receiver: HttpReceiver,
                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    live, engine = serve(_cfg(tmp_path, upstream, cache={"enabled": False}))
    ask = lambda tp, q: _client(live.url, tp).chat.completions.create(  # noqa: E731
        model="gpt-4o-mini", messages=[{"role": "user", "content": q}])
    # The caller did not sample: no span is exported, and its context goes upstream unchanged.
    unsampled = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
    ask(unsampled, "one")
    # A malformed traceparent starts a new trace (W3C), it is not an error.
    ask("00-zz-not-a-traceparent-01", "two")
    engine.tracing.flush()
    assert _upstream_traceparents(upstream)[0] == unsampled
    roots = [s for s in receiver.spans if s.kind == SERVER]
    assert len(roots) == 1 and roots[0].parent_id == ""
    assert unsampled.split("-")[1] not in {s.trace_id for s in receiver.spans}


def test_tracestate_travels_with_the_callers_trace(serve, upstream: FakeUpstream, receiver: HttpReceiver,
                                                   tmp_path: Path) -> None:
    live, engine = serve(_cfg(tmp_path, upstream, cache={"enabled": False}))
    state = "vendor1=opaque-1,rojo=00f067aa0ba902b7"

    def ask(tp: str, q: str) -> None:
        openai.OpenAI(base_url=live.url + "/v1", api_key="sk-x", max_retries=0,
                      default_headers={"traceparent": tp, "tracestate": state}).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": q}])

    trace_id, _, sampled_tp = _caller()
    ask(sampled_tp, "one")  # continued and sampled: the attempt's traceparent, the caller's tracestate
    unsampled = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
    ask(unsampled, "two")  # continued, not sampled: both pass through
    ask("00-zz-not-a-traceparent-01", "three")  # a new trace: the caller's tracestate is not its own
    engine.tracing.flush()
    sent = [(r.headers.get("traceparent", ""), r.headers.get("tracestate")) for r in upstream.requests]
    assert parse_traceparent(sent[0][0])[0] == int(trace_id, 16) and sent[0][1] == state
    assert sent[1] == (unsampled, state)
    assert parse_traceparent(sent[2][0]) is not None and sent[2][1] is None


def test_off_by_default_nothing_forwarded(serve, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    from engine import Engine

    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # the standard switch wins over the config's
    embedded = Engine.from_config({"data_dir": str(tmp_path / "d"), "tracing": {"enabled": True}})
    assert embedded.tracing is None
    embedded.close()
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    live, engine = serve(base_config(tmp_path, upstream))
    assert engine.tracing is None
    _, _, tp = _caller()
    openai.OpenAI(base_url=live.url + "/v1", api_key="sk-x", max_retries=0,
                  default_headers={"traceparent": tp, "tracestate": "a=b"}).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert _upstream_traceparents(upstream) == [""] and "tracestate" not in upstream.requests[0].headers


@pytest.mark.parametrize("value", [None, "", "00-abc", "ff-" + "1" * 32 + "-" + "2" * 16 + "-01",
                                   "00-" + "0" * 32 + "-" + "2" * 16 + "-01", "00-" + "1" * 32 + "-" + "0" * 16 + "-01",
                                   "00-" + "G" * 32 + "-" + "2" * 16 + "-01", "00-" + "1" * 32 + "-" + "2" * 16 + "-01-x"])
def test_parse_traceparent_refuses_malformed(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_parse_traceparent_reads_w3c() -> None:
    assert parse_traceparent("00-" + "a" * 32 + "-" + "b" * 16 + "-01") == (int("a" * 32, 16), int("b" * 16, 16), 1)
    # A future version may append fields: the first four are read.
    assert parse_traceparent("01-" + "a" * 32 + "-" + "b" * 16 + "-00-extra") == (int("a" * 32, 16), int("b" * 16, 16), 0)


def test_unsupported_protocol_is_named_at_startup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from engine import Engine

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not supported"):
        Engine.from_config({"data_dir": str(tmp_path), "tracing": {"enabled": True}})


def test_failed_request_and_anthropic_door(serve, upstream: FakeUpstream, receiver: HttpReceiver,
                                           tmp_path: Path) -> None:
    import anthropic

    live, _ = serve(_cfg(tmp_path, upstream, routing={"max_candidates": 1}))
    trace_id, caller_span, tp = _caller()
    upstream.script(*[Reply.error_status(500, "boom")] * 2)  # both tries of the only candidate
    client = anthropic.Anthropic(base_url=live.url, api_key="sk-x", max_retries=0,
                                 default_headers={"traceparent": tp})
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="gpt-4o-mini", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 502
    root, stages, attempts = _one_request(receiver.wait_for(trace_id, count=8))
    assert root.parent_id == caller_span and root.status_code == 2  # ERROR
    assert root.attrs["http.response.status_code"] == 502 and root.attrs["error.type"]
    assert root.attrs["gen_ai.request.max_tokens"] == 64
    assert [s.attrs["thrifty.attempt.outcome"] for s in attempts] == ["retried", "failed"]
    assert all(s.attrs["http.response.status_code"] == 500 for s in attempts)
    assert "thrifty.store" not in stages
    assert _upstream_traceparents(upstream) == [f"00-{trace_id}-{s.span_id}-01" for s in attempts]


def test_cut_stream_continued_elsewhere(serve, upstream: FakeUpstream, receiver: HttpReceiver,
                                        tmp_path: Path) -> None:
    full = "".join(f"tok{i:02d} " for i in range(60))
    live, _ = serve(_cfg(tmp_path, upstream))
    upstream.script(Reply(text=full, cut_after=21), Reply(text=full, continues=True))
    trace_id, _, tp = _caller()
    stream = _client(live.url, tp).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Count to sixty for me."}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == full
    root, stages, attempts = _one_request(receiver.wait_for(trace_id, count=7))
    cut, rest = attempts
    assert "thrifty.stream" in stages and "thrifty.store" not in stages  # a stitched answer is not stored
    assert cut.attrs["thrifty.attempt.outcome"] == "continued" and cut.status_code == 2
    assert "after content was sent" in cut.attrs["thrifty.retry.reason"]
    assert rest.attrs["thrifty.attempt.outcome"] == "ok" and rest.end_ns == root.end_ns
    assert cut.attrs["thrifty.deployment"] != rest.attrs["thrifty.deployment"]
    assert root.attrs["thrifty.attempts"] == 3 and root.attrs["http.response.status_code"] == 200
    assert _upstream_traceparents(upstream) == [f"00-{trace_id}-{s.span_id}-01" for s in attempts]


def test_embeddings_request_is_traced(serve, upstream: FakeUpstream, receiver: HttpReceiver,
                                      tmp_path: Path) -> None:
    live, _ = serve(_cfg(tmp_path, upstream))
    trace_id, caller_span, tp = _caller()
    raw = _client(live.url, tp).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["traced words", "more words"])
    assert raw.headers["x-thrifty-cache"] == "miss"
    tokens, cost = raw.parse().usage.prompt_tokens, float(raw.headers["x-thrifty-cost-usd"])
    spans = receiver.wait_for(trace_id, count=2)
    root, stages, attempts = _one_request(spans)
    assert root.name == "embeddings text-embedding-3-small" and root.parent_id == caller_span and stages == {}
    a = root.attrs
    assert a["gen_ai.operation.name"] == "embeddings" and a["gen_ai.request.model"] == "text-embedding-3-small"
    assert a["gen_ai.provider.name"] == "fake" and a["gen_ai.usage.input_tokens"] == tokens > 0
    assert a["thrifty.cache.outcome"] == "miss" and cost > 0 and a["thrifty.cost_usd"] == pytest.approx(cost)
    assert a["thrifty.tenant"] == "default" and a["http.response.status_code"] == 200
    assert "traced words" not in json.dumps([s.attrs for s in spans])  # input text is never a span attribute
    (call,) = attempts
    assert call.parent_id == root.span_id and call.attrs["gen_ai.operation.name"] == "embeddings"
    assert call.attrs["thrifty.attempt.outcome"] == "ok" and call.attrs["http.response.status_code"] == 200
    assert _upstream_traceparents(upstream) == [f"00-{trace_id}-{call.span_id}-01"]
    # The same inputs again: an exact hit is a SERVER span alone (nothing went upstream).
    trace_id2, _, tp2 = _caller()
    _client(live.url, tp2).embeddings.create(model="text-embedding-3-small", input=["traced words", "more words"])
    root2, _, attempts2 = _one_request(receiver.wait_for(trace_id2, count=1))
    assert root2.attrs["thrifty.cache.outcome"] == "exact" and attempts2 == [] and root2.attrs["thrifty.saved_usd"] > 0
    # A failed upstream: the request's span says so, each upstream call's span carries the error.
    upstream.script(*[Reply.error_status(500, "down")] * 4)
    trace_id3, _, tp3 = _caller()
    with pytest.raises(openai.APIStatusError):
        _client(live.url, tp3).embeddings.create(model="text-embedding-3-small", input="fails upstream")
    root3, _, attempts3 = _one_request(receiver.wait_for(trace_id3, count=2))
    assert root3.attrs["http.response.status_code"] == 502 and "error.type" in root3.attrs
    assert attempts3 and all(s.attrs["thrifty.attempt.outcome"] in ("failed", "retried", "fell_back")
                             for s in attempts3)


def test_cache_lookup_reports_verify_time_only_when_asked(tmp_path: Path) -> None:
    from cache import CacheConfig, EntryMeta, HashingEncoder, SemanticCache, scope
    from router.types import ChatRequest, Message

    enc = HashingEncoder(64)
    ask = lambda text: scope(ChatRequest(model="auto", messages=[Message(role="user", content=text)]))  # noqa: E731
    with SemanticCache.open(tmp_path / "c", "hashing-64", 64, CacheConfig(durable=False)) as c:
        stored = ask("how many moons does planet number 5 have")
        c.insert(stored, enc.encode([stored.text])[0], b"five", EntryMeta())
        vec = enc.encode([stored.text])[0]
        timing: dict[str, float] = {}
        hit = c.lookup(stored, vec, timing=timing)
        assert hit is not None and hit.response == b"five" and timing["verify_ms"] > 0
        assert c.lookup(stored, vec).response == b"five"  # the same answer untimed
        far = ask("zzz qqq")
        untouched: dict[str, float] = {}
        assert c.lookup(far, enc.encode([far.text])[0], timing=untouched) is None
        assert untouched == {}  # no candidate above the bar: no verifier ran
