"""Hostile bodies and headers, generated with hypothesis, against a real proxy on 127.0.0.1.

Whatever arrives: never a 5xx, never a hang (every answer within the client's timeout), every 4xx is
OpenAI-shaped JSON, every 200 a chat completion, and the server keeps serving afterwards. The bodies are
JSON *text*, so they can hold what a JSON library would never write: ``NaN`` and ``Infinity`` literals,
numbers past float range, duplicate keys, lone surrogate escapes, nesting thousands deep, invalid UTF-8.

Default run: ``THRIFTY_FUZZ_N`` examples per test (200), against an in-process server. The full run for
the report: ``THRIFTY_FUZZ_N=10000 pytest tests/security/test_fuzz_proxy.py -s`` — above 1,000 examples
the target is a real ``thrifty serve`` subprocess (uvloop, the guarded protocol), so that the printed RSS
before and after is the server's own, not the test process's (hypothesis keeps its examples in memory).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_support import ADMIN_KEY, KEYS, PROVIDER_KEY, auth, chat_body, gateway_config

N = int(os.environ.get("THRIFTY_FUZZ_N", "200"))
FUZZ = settings(max_examples=N, deadline=None, database=None, derandomize=N <= 200,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# ------------------------------------------------------------------------------------ JSON text, hostile
_SPECIAL_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "0.0", "1E+2",
                    "123456789012345678901234567890", "-9223372036854775809", "18446744073709551616"]
_SPECIAL_STRINGS = ['"\\ud800"', '"a\\udfff b"', '"\\ud83d\\ude00"', '"\\u0000"', '""', '" "', '"auto"',
                    '"gpt-4o-mini"', '"user"', '"system"', '"tool"', '"stop"', '"on"', '"off"', '"read-only"',
                    '"write-only"', '"cost"', '"target"', '"text"', '"json_object"', '"function"', '"nan"']


def _deep(n: int, kind: int) -> str:
    return "[" * n + "]" * n if kind == 0 else '{"a":' * n + "1" + "}" * n


scalars = st.one_of(
    st.sampled_from(["null", "true", "false", *_SPECIAL_NUMBERS, *_SPECIAL_STRINGS]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
    st.text(max_size=40).map(json.dumps),
    st.integers(min_value=1_000, max_value=300_000).map(lambda n: '"' + "x" * n + '"'),
    st.tuples(st.integers(min_value=2, max_value=3_000), st.integers(0, 1)).map(lambda t: _deep(*t)),
)
keys = st.one_of(st.sampled_from(["type", "role", "content", "name", "a", "text", "function", "parameters"]),
                 st.text(max_size=12))


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"  # keys repeat: duplicate keys


values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4).map(_array),
                               st.lists(st.tuples(keys, children), max_size=4).map(_object)),
    max_leaves=8,
)

FIELDS = ["model", "messages", "stream", "temperature", "top_p", "n", "max_tokens", "max_completion_tokens",
          "stop", "tools", "tool_choice", "response_format", "metadata", "user", "seed", "logit_bias",
          "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "stream_options", "thrifty",
          "parallel_tool_calls", "audio", "prediction", "unknown_field"]
CONTROLS = ["cache_mode", "namespace", "ttl", "threshold", "task", "policy", "quality_target", "max_cost_usd",
            "ttft_s", "stall_s", "deadline_s", "bogus"]

# Plausible values, so that most requests pass validation and go on into cache, router and dispatch.
_num = st.floats(min_value=0, max_value=2).map(json.dumps)
VALID: dict[str, Any] = {
    "stream": st.sampled_from(["true", "false"]), "temperature": _num, "top_p": _num,
    "n": st.sampled_from(["1", "2"]), "max_tokens": st.integers(1, 4096).map(str),
    "max_completion_tokens": st.integers(1, 4096).map(str), "stop": st.sampled_from(['"\\n"', '["END"]']),
    "tools": st.just('[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]'),
    "tool_choice": st.sampled_from(['"auto"', '"none"']), "response_format": st.just('{"type":"json_object"}'),
    "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3).map(json.dumps),
    "user": st.text(max_size=30).map(json.dumps), "seed": st.integers(0, 2**31).map(str),
    "logit_bias": st.just('{"42": -100}'), "presence_penalty": _num, "frequency_penalty": _num,
    "stream_options": st.just('{"include_usage": true}'),
}
CONTROL_VALID: dict[str, Any] = {
    "cache_mode": st.sampled_from(['"on"', '"off"', '"read-only"', '"write-only"']),
    "namespace": st.sampled_from(['"team-a"', '"globex"', '"../x"']), "ttl": st.sampled_from(["60", "1e9"]),
    "threshold": _num, "task": st.sampled_from(['"code"', '"math"']), "policy": st.sampled_from(['"cost"', '"target"']),
    "quality_target": st.floats(0, 1).map(json.dumps), "max_cost_usd": st.sampled_from(["0", "0.5", "1e-9"]),
}


def _field(name: str, valid: dict[str, Any]) -> Any:
    """Two times in three a plausible value for ``name``, else a hostile one."""
    good = valid.get(name)
    return values if good is None else st.one_of(good, good, values)


_user_text = st.text(max_size=200).map(lambda t: json.dumps([{"role": "user", "content": t}]))
messages = st.one_of(
    _user_text,
    _user_text,
    values,
    st.lists(st.tuples(st.sampled_from(["user", "system", "assistant", "tool", "x"]), values), min_size=1,
             max_size=3).map(lambda ms: _array([_object([("role", json.dumps(r)), ("content", c)]) for r, c in ms])),
    st.text(max_size=200).map(lambda t: json.dumps([{"role": "user", "content": t}])),
)
controls = st.lists(st.sampled_from(CONTROLS).flatmap(lambda k: st.tuples(st.just(k), _field(k, CONTROL_VALID))),
                    max_size=5).map(_object)


@st.composite
def bodies(draw: Any) -> bytes:
    """Mostly a plausible request with a few hostile fields (so it reaches deep into the pipeline), sometimes
    anything at all; then, now and then, damaged at the byte level."""
    pairs: list[tuple[str, str]] = [("model", draw(st.sampled_from(['"gpt-4o-mini"', '"auto"']))),
                                    ("messages", draw(messages))]
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=5)):
        pairs.append((name, draw(controls if name == "thrifty" else _field(name, VALID))))
    text = _object(pairs) if draw(st.sampled_from([True] * 9 + [False])) else draw(values)
    raw = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none"] * 18 + ["cut", "byte"]))
    if damage == "cut":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif damage == "byte":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + raw[at:]
    return raw


# ------------------------------------------------------------------------------------ headers, hostile
_HEADER_VALUES = ["nan", "NaN", "inf", "-inf", "1e309", "-0", "0", "-1", "1e300", "0x10", "1_000", "１", "",
                  "on", "off", "read-only", "write-only", "quality", "target", "no-store", "no-cache",
                  "application/json", "text/plain", "Bearer " + KEYS["acme"], "Bearer wrong", "Bearer "]
_vchar = st.integers(min_value=0x21, max_value=0xFF).filter(lambda b: b != 0x7F)
header_value = st.one_of(
    st.sampled_from(_HEADER_VALUES).map(str.encode),
    st.lists(_vchar, max_size=60).map(bytes),
    st.integers(min_value=600, max_value=20_000).map(lambda n: b"v" * n),
)
HEADER_NAMES = ["x-thrifty-cache-mode", "x-thrifty-namespace", "x-thrifty-ttl", "x-thrifty-threshold",
                "x-thrifty-task", "x-thrifty-policy", "x-thrifty-quality-target", "x-thrifty-max-cost-usd",
                "x-thrifty-ttft-s", "x-thrifty-stall-s", "x-thrifty-deadline-s", "x-request-id", "cache-control", "content-type", "authorization", "api-key", "x-unknown"]
headers = st.dictionaries(st.sampled_from(HEADER_NAMES), header_value, max_size=6)


# ------------------------------------------------------------------------------------ the harness
def _rss_kb(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class Tally:
    def __init__(self, pid: int | str) -> None:
        self.pid = pid
        self.statuses: Counter[int] = Counter()
        self.reasons: Counter[str] = Counter()
        self.rss_before = _rss_kb(pid)

    def report(self, name: str) -> None:
        fives = sum(n for s, n in self.statuses.items() if s >= 500)
        who = "test process (server in-process)" if self.pid == "self" else f"server pid {self.pid}"
        print(f"\n[fuzz] {name}: {sum(self.statuses.values())} requests, 5xx={fives}, "
              f"statuses={dict(sorted(self.statuses.items()))}, RSS of {who}: "
              f"before {self.rss_before / 1024:.0f} MB, after {_rss_kb(self.pid) / 1024:.0f} MB")
        print("[fuzz] most frequent refusals:", self.reasons.most_common(6))


def check(response: httpx.Response) -> None:
    status = response.status_code
    assert status < 500, (status, response.text[:500])
    if status >= 400:
        assert response.headers.get("content-type", "").startswith("application/json"), response.text[:200]
        err = response.json()["error"]
        assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str)
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        assert response.text.rstrip().endswith("data: [DONE]") or '"error"' in response.text
    else:
        assert response.json()["object"] == "chat.completion"


def _serve_subprocess(upstream_url: str, tmp_path: Any) -> Iterator[tuple[str, int]]:
    """``thrifty serve`` in a process of its own; (url, pid)."""
    cfg = tmp_path / "fuzz.yaml"
    cfg.write_text(yaml.safe_dump(gateway_config(tmp_path / "serve-data", upstream_url)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "THRIFTY_ADMIN_KEY": ADMIN_KEY, "THRIFTY_TEST_PROVIDER_KEY": PROVIDER_KEY}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--config", str(cfg), "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "thrifty serve did not start"
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def target(gateway: Any, upstream: Any, tmp_path: Any) -> Iterator[tuple[str, httpx.Client, Tally]]:
    if N > 1000:
        served = _serve_subprocess(upstream.url, tmp_path)
        url, pid = next(served)
    else:
        url, pid = gateway().url, "self"  # type: ignore[assignment]
    tally = Tally(pid)
    with httpx.Client(base_url=url, timeout=httpx.Timeout(15.0)) as client:
        yield url, client, tally
        # The server survived: it still answers a plain request and its health check.
        assert client.get("/healthz").status_code == 200
        r = client.post("/v1/chat/completions", json=chat_body("still there?"), headers=auth())
        assert r.status_code == 200, r.text[:300]
    if N > 1000:
        next(served, None)  # stops the subprocess


def _post(client: httpx.Client, tally: Tally, body: bytes, hdrs: dict[str, Any]) -> None:
    try:
        r = client.post("/v1/chat/completions", content=body, headers=hdrs)
    except httpx.TimeoutException:  # a hang is a failure, not a skipped example
        pytest.fail(f"no answer within 15 s for body {body[:200]!r} headers {list(hdrs)}")
    tally.statuses[r.status_code] += 1
    check(r)
    if r.status_code >= 400:
        tally.reasons[r.json()["error"]["message"][:48]] += 1


def test_fuzzed_bodies_never_5xx(target: tuple[str, httpx.Client, Tally]) -> None:
    _, client, tally = target

    @FUZZ
    @given(body=bodies())
    def run(body: bytes) -> None:
        _post(client, tally, body, {**auth(), "content-type": "application/json"})

    run()
    tally.report("bodies")
    assert sum(tally.statuses.values()) >= min(N, 50)


def test_fuzzed_headers_never_5xx(target: tuple[str, httpx.Client, Tally]) -> None:
    _, client, tally = target

    @FUZZ
    @given(hdrs=headers, stream=st.booleans(), text=st.text(max_size=50))
    def run(hdrs: dict[str, bytes], stream: bool, text: str) -> None:
        body = json.dumps(chat_body(text or "hi", stream=stream)).encode()
        sent: dict[str, Any] = {**auth(), "content-type": "application/json"}
        sent.update({k: v.strip(b" \t") for k, v in hdrs.items()})
        _post(client, tally, body, sent)

    run()
    tally.report("headers")


def test_fuzzed_admin_bodies_never_5xx(target: tuple[str, httpx.Client, Tally]) -> None:
    from security_support import ADMIN

    _, client, tally = target
    routes = [("PUT", "/admin/routing/rules"), ("POST", "/admin/cache/purge"), ("POST", "/admin/cache/import")]

    @FUZZ
    @given(route=st.sampled_from(routes), body=values)
    def run(route: tuple[str, str], body: str) -> None:
        r = client.request(route[0], route[1], content=body.encode("utf-8", "surrogatepass"), headers=ADMIN)
        tally.statuses[r.status_code] += 1
        assert r.status_code < 500, (route, body[:200], r.text[:300])
        if r.status_code >= 400:
            assert isinstance(r.json()["error"]["message"], str)

    run()
    tally.report("admin")
