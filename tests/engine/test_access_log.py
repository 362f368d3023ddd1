"""The access log on a live proxy: one line per request, every field, never a key or a prompt, one line
even when the client sends control characters; and metrics without ``None`` label values."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from engine_support import base_config

from bench.fake_upstream import FakeUpstream, Reply
from engine.access_log import Entry, format_json, format_text

PROVIDER_KEY = "sk-provider-SECRET-0123456789"
VIRTUAL_KEY = "vk-team-SECRET-abcdef"
PROMPT = "PROMPT-MARKER: what is the capital of Atlantis?"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def wait(self, n: int) -> list[str]:
        deadline = time.monotonic() + 10  # the writer thread is asynchronous: wait for it, not on it
        while len(self.lines) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.lines


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    log = logging.getLogger("thrifty.access")
    log.addHandler(handler)
    yield handler
    log.removeHandler(handler)


def _config(tmp_path: Path, upstream: FakeUpstream, fmt: str) -> dict:
    cfg = base_config(tmp_path, upstream, server={"access_log": fmt},
                      tenants={"team": {"keys": [{"name": "ci", "key": VIRTUAL_KEY}]}})
    cfg["providers"][0]["api_key_env"] = "FAKE_PROVIDER_KEY"
    return cfg


def test_json_lines_have_every_field_and_no_secret(serve, upstream: FakeUpstream, tmp_path: Path, lines: Lines,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", PROVIDER_KEY)
    live, _ = serve(_config(tmp_path, upstream, "json"))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=VIRTUAL_KEY, max_retries=0)
    msgs = [{"role": "user", "content": PROMPT}]
    client.chat.completions.create(model="gpt-4o-mini", messages=msgs)  # miss
    client.chat.completions.create(model="gpt-4o-mini", messages=msgs)  # exact hit
    text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "a streamed one"}], stream=True) if c.choices)
    assert text
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=live.url + "/v1", api_key="wrong-key", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=msgs)
    got = [json.loads(line) for line in lines.wait(4)]
    assert len(got) == 4
    miss, hit, streamed, denied = got
    for e in got:
        assert set(e) == set(Entry.__struct_fields__)
        assert e["method"] == "POST" and e["path"] == "/v1/chat/completions" and e["request_id"]
    assert miss["status"] == 200 and miss["tenant"] == "team" and miss["cache"] == "miss"
    assert miss["model"] == "gpt-4o-mini" and miss["provider"] == "fake" and miss["cost_usd"] > 0
    assert miss["latency_ms"] >= miss["overhead_ms"] > 0
    assert hit["cache"] == "exact" and hit["provider"] == "cache" and hit["cost_usd"] == 0
    # A stream's line is written after its last chunk, with its final cost.
    assert streamed["cache"] == "miss" and streamed["cost_usd"] > 0
    assert denied["status"] == 401 and denied["tenant"] is None and denied["model"] is None
    raw = "\n".join(lines.lines)
    for secret in (PROVIDER_KEY, VIRTUAL_KEY, "wrong-key", "PROMPT-MARKER", "Atlantis"):
        assert secret not in raw


def test_text_lines_stay_one_line_per_request(serve, upstream: FakeUpstream, tmp_path: Path, lines: Lines) -> None:
    live, _ = serve(base_config(tmp_path, upstream, server={"access_log": "text"}))
    r = httpx.get(live.url + "/v1/x%0Aforged 200 line%20tenant=admin", headers={"x-request-id": "abc def"})
    assert r.status_code == 404
    httpx.get(live.url + "/healthz")
    got = lines.wait(2)
    assert len(got) == 2 and all("\n" not in line for line in got)
    assert " GET /v1/x\\x0aforged\\x20200\\x20line\\x20tenant=admin 404 tenant=- " in got[0]
    assert got[1].split()[1:4] == ["GET", "/healthz", "200"]


def test_off_writes_nothing(serve, upstream: FakeUpstream, tmp_path: Path, lines: Lines) -> None:
    live, _ = serve(base_config(tmp_path, upstream, server={"access_log": "off"}))
    assert httpx.get(live.url + "/healthz").status_code == 200
    live.stop()  # the lifespan's shutdown drains the queue: anything queued would be written by now
    assert lines.lines == []


def test_formats_escape_what_a_client_controls() -> None:
    e = Entry(ts="2026-01-01T00:00:00.000Z", method="GET", path='/a b"\\\r', status=404, tenant=None, model=None,
              provider=None, cache=None, cost_usd=None, latency_ms=1.5, overhead_ms=None, request_id="r\n1")
    text = format_text(e)
    assert text == ('2026-01-01T00:00:00.000Z GET /a\\x20b\\"\\\\\\x0d 404 tenant=- model=- provider=- cache=- '
                    'cost_usd=- latency_ms=1.500 overhead_ms=- request_id=r\\x0a1')
    assert json.loads(format_json(e))["path"] == '/a b"\\\r'


def test_metrics_have_no_none_labels(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(base_config(tmp_path, upstream))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.APIStatusError):  # fails before a model is chosen: model and provider unknown
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"thrifty": {"max_cost_usd": 1e-12}})
    text = httpx.get(live.url + "/metrics").text
    assert 'thrifty_requests_total{cache="miss",model="gpt-4o-mini"' in text
    assert 'model="none",provider="none"' in text
    assert '"None"' not in text and '=""' not in text


def test_a_failed_upstream_call_names_its_model_and_provider(serve, upstream: FakeUpstream, tmp_path: Path,
                                                            lines: Lines) -> None:
    live, _ = serve(base_config(tmp_path, upstream, server={"access_log": "json"}))
    upstream.script(*[Reply.error_status(503, "overloaded")] * 4)
    r = httpx.post(live.url + "/v1/chat/completions",
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "q"}]})
    assert r.status_code == 502
    (line,) = [json.loads(x) for x in lines.wait(1)]
    assert line["status"] == 502 and line["model"] == "gpt-4o-mini" and line["provider"] == "fake"
    assert line["request_id"] == r.headers["x-thrifty-request-id"]


def test_a_log_that_was_never_started_holds_nothing(lines: Lines) -> None:
    from engine.access_log import AccessLog, Notes

    log = AccessLog("text")  # an app served without its lifespan: no writer thread to drain a queue
    for _ in range(100):
        log.put((time.time(), "GET", "/healthz", 200, 1000, Notes()))
    assert not log._q
    log.start()
    log.put((time.time(), "GET", "/healthz", 200, 1000, Notes()))
    log.close()  # drains what was queued
    assert len(lines.lines) == 1 and " GET /healthz 200 " in lines.lines[0]
