"""Limits an attacker leans on: header count and size, slow heads, stalled bodies, idle connections (raw
sockets against the guarded protocol), JSON depth, non-finite numbers, TTLs, string lengths, key
redaction, and the honesty of the ``x-thrifty-*`` headers (issue 11, findings 6, 8, 9, 10, 11)."""

from __future__ import annotations

import json
import select
import socket
from typing import Any

import httpx
import pytest
from security_support import PROVIDER_KEY, assert_openai_error, auth, chat_body

from bench.fake_upstream import Reply
from engine.config import load
from engine.errors import ConfigError

DEEP = '{"a":' * 1000 + "1" + "}" * 1000
FAST = {"server": {"header_timeout_s": 0.5, "body_timeout_s": 0.5, "idle_timeout_s": 0.3}}


def _read_response(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket's timeout)."""
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else -1


def _assert_json_error(raw: bytes, status: int) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert _status(raw) == status, raw[:300]
    assert b"content-type: application/json" in head.lower()
    assert b'"error"' in body and b'"message"' in body


def _still_serving(gw: Any) -> None:
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=chat_body(), headers=auth(), timeout=15)
    assert r.status_code == 200


# ------------------------------------------------------------------------------------ transport (raw sockets)
def test_too_many_headers_is_431(gateway: Any) -> None:
    gw = gateway()
    s = gw.connect()
    extra = b"".join(b"x-h%d: v\r\n" % i for i in range(500))
    s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + extra + b"\r\n")
    raw = _read_response(s)
    _assert_json_error(raw, 431)
    assert b"more than 100 request headers" in raw
    _still_serving(gw)


def test_a_huge_header_is_refused_at_the_limit_not_buffered(gateway: Any) -> None:
    gw = gateway()
    s = gw.connect()
    s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ")
    sent = 0
    # Up to 8 MB, 16 KB at a time; the server must answer (and stop reading) long before the end.
    while sent < 8 << 20:
        s.sendall(b"a" * 16384)
        sent += 16384
        if select.select([s], [], [], 0.05)[0]:
            break
    raw = _read_response(s)
    assert sent < 1 << 20, f"the server read {sent} bytes of one header before answering"
    _assert_json_error(raw, 431)
    _still_serving(gw)


def test_slow_headers_get_408(gateway: Any) -> None:
    gw = gateway(**FAST)
    s = gw.connect()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
    dripped = 0
    # A slowloris: one header byte every 50 ms, for at most 20 s; the head deadline must cut it off.
    while dripped < 400 and not select.select([s], [], [], 0.05)[0]:
        try:
            s.sendall(b"x")
        except OSError:
            break
        dripped += 1
    assert dripped < 400, "a drip-fed request head was never cut off"
    _assert_json_error(_read_response(s), 408)
    _still_serving(gw)


def test_a_stalled_body_gets_408(gateway: Any) -> None:
    gw = gateway(**FAST)
    s = gw.connect()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              b"authorization: " + auth()["authorization"].encode() + b"\r\n"
              b"content-length: 1000\r\n\r\n" + b'{"model": "gpt-4o-mini", ')
    raw = _read_response(s)
    _assert_json_error(raw, 408)
    assert b"stalled" in raw
    _still_serving(gw)


def test_idle_and_silent_connections_are_closed(gateway: Any) -> None:
    gw = gateway(**FAST)
    silent = gw.connect()
    assert silent.recv(100) == b""  # closed without an answer: it never asked anything
    s = gw.connect()
    s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
    raw = _read_response(s)  # returns once the server closes the idle keep-alive connection
    assert _status(raw) == 200 and raw.count(b"HTTP/1.1 ") == 1


def test_malformed_http_is_a_json_400(gateway: Any) -> None:
    gw = gateway()
    s = gw.connect()
    s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
    _assert_json_error(_read_response(s), 400)
    _still_serving(gw)


# ------------------------------------------------------------------------------------ bodies and controls
@pytest.mark.parametrize("where", ["tools", "response_format", "metadata", "thrifty", "content", "tool_choice"])
def test_json_nested_1000_deep_is_400(gateway: Any, where: str) -> None:
    gw = gateway()
    body = {
        "tools": '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],'
                 '"tools":[{"type":"function","function":{"name":"f","parameters":DEEP}}]}',
        "response_format": '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],'
                           '"response_format":{"type":"json_schema","json_schema":DEEP}}',
        "metadata": '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"metadata":DEEP}',
        "thrifty": '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"thrifty":DEEP}',
        "content": '{"model":"gpt-4o-mini","messages":[{"role":"user","content":DEEP}]}',
        "tool_choice": '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"tool_choice":DEEP}',
    }[where].replace("DEEP", DEEP)
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=body, headers={**auth(), "content-type": "application/json"})
    assert "nested 100" in assert_openai_error(r, 400)["message"]
    _still_serving(gw)


@pytest.mark.parametrize(("header", "value"), [
    ("x-thrifty-max-cost-usd", "nan"), ("x-thrifty-max-cost-usd", "inf"), ("x-thrifty-max-cost-usd", "-1"),
    ("x-thrifty-ttl", "nan"), ("x-thrifty-ttl", "inf"), ("x-thrifty-ttl", "1e300"), ("x-thrifty-ttl", "-5"),
    ("x-thrifty-threshold", "nan"), ("x-thrifty-quality-target", "nan"), ("x-thrifty-quality-target", "-inf"),
    ("x-thrifty-ttft-s", "nan"), ("x-thrifty-stall-s", "inf"), ("x-thrifty-deadline-s", "-1"),
])
def test_non_finite_or_out_of_range_controls_are_400(gateway: Any, header: str, value: str) -> None:
    gw = gateway()
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=chat_body(), headers={**auth(), header: value})
    err = assert_openai_error(r, 400)
    assert err["param"] in (header, header.removeprefix("x-thrifty-").replace("-", "_")), err


@pytest.mark.parametrize(("fragment", "param"), [
    ('"temperature": 1e400', "temperature"), ('"top_p": -1e400', "top_p"),
    ('"presence_penalty": 1e999', "presence_penalty"), ('"logit_bias": {"42": 1e400}', "logit_bias"),
    ('"thrifty": {"ttl": 1e400}', "ttl"), ('"thrifty": {"max_cost_usd": 1e400}', "max_cost_usd"),
    ('"thrifty": {"ttl": 1e300}', "ttl"),
])
def test_non_finite_body_numbers_are_400(gateway: Any, fragment: str, param: str) -> None:
    gw = gateway()
    body = '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], ' + fragment + "}"
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=body, headers={**auth(), "content-type": "application/json"})
    assert param in assert_openai_error(r, 400)["param"]


@pytest.mark.parametrize("ttl", [float("nan"), float("inf"), 1e300, 0.0, -1.0])
def test_config_ttl_must_be_finite_positive_and_bounded(ttl: float, tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=r"ttl_s.*\$\.cache"):
        load({"data_dir": str(tmp_path), "cache": {"ttl_s": ttl}})
    assert load({"data_dir": str(tmp_path), "cache": {"ttl_s": None}}).raw.cache.ttl_s is None


def test_over_long_strings_are_refused_before_anything_is_stored(gateway: Any) -> None:
    gw = gateway()
    c = httpx.Client(base_url=gw.url, timeout=30, headers=auth())
    long = "m" * 3_000_000
    assert_openai_error(c.post("/v1/chat/completions", json=chat_body(model=long)), 400)
    assert_openai_error(c.post("/v1/chat/completions", json=chat_body(user="u" * 10_000)), 400)
    assert_openai_error(c.post("/v1/chat/completions", json=chat_body(metadata={"k": "v" * 10_000})), 400)
    assert_openai_error(c.post("/v1/chat/completions", json=chat_body(), headers={"x-thrifty-namespace": "n" * 10_000}),
                        400)
    r = c.post("/v1/chat/completions", json=chat_body(), headers={"x-request-id": "r" * 10_000})
    assert "x-request-id" in assert_openai_error(r, 400)["message"]
    assert all(len(v) < 600 for v in r.headers.values()), "a long request id was echoed back"
    huge = c.post("/v1/chat/completions", json=chat_body(), headers={"x-request-id": "r" * 1_000_000})
    assert huge.status_code == 431
    c.get("/healthz")
    gw.engine.ledger.flush()
    rows = gw.engine.ledger.query("SELECT MAX(LENGTH(route)) AS route, MAX(LENGTH(client_request_id)) AS rid, "
                                  "COUNT(*) AS n FROM requests")
    assert (rows[0]["route"] or 0) <= 512 and (rows[0]["rid"] or 0) <= 512, rows


# ------------------------------------------------------------------------------------ redaction (finding 10)
@pytest.mark.parametrize("shape", ["openai", "plain", "code"])
def test_a_key_straddling_the_500_character_cut_leaves_no_prefix(gateway: Any, upstream: Any, shape: str) -> None:
    gw = gateway()
    pad = "x" * 494  # the key starts 6 characters before the cut: an unredacted cut would keep "sk-pro"
    if shape == "openai":
        reply = Reply(status=400, error={"error": {"message": pad + PROVIDER_KEY, "type": "invalid_request_error"}})
    elif shape == "plain":
        reply = Reply(status=400, body=(pad + PROVIDER_KEY).encode(), content_type="text/plain")
    else:
        reply = Reply(status=400, error={"error": {"message": "bad", "code": "y" * 194 + PROVIDER_KEY}})
    upstream.script(reply)
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=chat_body("leak please"), headers=auth(), timeout=15)
    assert 400 <= r.status_code < 600
    for n in (4, 6, 10):
        assert PROVIDER_KEY[:n] not in r.text, (n, r.text[-200:])
    assert PROVIDER_KEY[:6] not in str(dict(r.headers))


# ------------------------------------------------------------------------------------ honest headers (finding 11)
def test_a_stream_reports_its_real_overhead(gateway: Any) -> None:
    gw = gateway()
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=chat_body("stream me", stream=True),
                      headers=auth(), timeout=15) as r:
        assert r.status_code == 200
        overhead = r.headers["x-thrifty-overhead-ms"]
        r.read()
    assert float(overhead) > 0.0, overhead


HEADERS = ("x-thrifty-cache", "x-thrifty-model", "x-thrifty-provider", "x-thrifty-cost-usd",
           "x-thrifty-overhead-ms", "x-thrifty-request-id")


def test_error_responses_carry_the_pipelines_headers(gateway: Any, upstream: Any) -> None:
    gw = gateway()
    upstream.script(Reply.error_status(400, "the upstream rejects this prompt"))
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=chat_body("rejected prompt"), headers=auth(), timeout=15)
    assert_openai_error(r, 400)
    assert all(h in r.headers for h in HEADERS), dict(r.headers)
    assert r.headers["x-thrifty-cache"] == "miss"
    assert r.headers["x-thrifty-model"] == "gpt-4o-mini" and r.headers["x-thrifty-provider"] == "fake"
    assert float(r.headers["x-thrifty-cost-usd"]) == 0.0
    # Refused before the pipeline (no key): still every header, saying nothing was looked up or spent.
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=chat_body(), timeout=15)
    assert_openai_error(r, 401)
    assert all(h in r.headers for h in HEADERS) and r.headers["x-thrifty-cache"] == "bypass"


def test_a_slow_answer_is_never_cut_by_a_pipelined_partial_head(gateway: Any, upstream: Any) -> None:
    """The head deadline counts the client's silence, not ours: a partial second head pipelined behind a
    slow answer does not cut that answer; once it is written whole, the stalled connection is closed."""
    gw = gateway(**FAST)
    upstream.script(Reply(delay=1.5))  # three head deadlines long
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "slow one"}]}'
    s = gw.connect()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              b"authorization: " + auth()["authorization"].encode() + b"\r\n"
              b"content-length: %d\r\n\r\n" % len(body) + body + b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
    raw = b""
    while chunk := s.recv(65536):  # ends only when the server closes (the socket's timeout is 10 s)
        raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert _status(raw) == 200, raw[:400]
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    answer, after = rest[:length], rest[length:]
    assert json.loads(answer)["object"] == "chat.completion"
    # Then either the idle close or the head deadline comes first: a clean close, or a 408 and a close.
    assert after == b"" or _status(after) == 408, after[:200]


def test_a_config_nested_too_deep_is_a_config_error(tmp_path: Any) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("routing:\n  rules:\n    - when: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.yaml: nested too deeply"):
        load(path)
