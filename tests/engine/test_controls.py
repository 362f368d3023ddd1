from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.admin import parse_since
from engine.controls import merge, options_from_headers, validate
from engine.errors import RequestError
from engine.limits import check_depth, check_request, check_request_id, json_depth, request_id
from router.types import ChatRequest, Message, ThriftyOptions


def test_headers_become_options() -> None:
    opts = merge(None, options_from_headers({
        "x-thrifty-cache-mode": "read-only", "x-thrifty-namespace": "ns", "x-thrifty-ttl": "60",
        "x-thrifty-task": "code", "x-thrifty-policy": "cost",
    }))
    assert opts == ThriftyOptions(cache_mode="read-only", namespace="ns", ttl=60.0, task="code", policy="cost")


def test_body_wins_over_headers() -> None:
    opts = merge(ThriftyOptions(namespace="body"), options_from_headers({"x-thrifty-namespace": "hdr",
                                                                          "x-thrifty-ttl": "5"}))
    assert opts is not None and opts.namespace == "body" and opts.ttl == 5.0


def test_cache_control() -> None:
    assert options_from_headers({"cache-control": "no-store"})["cache_mode"] == "read-only"
    assert options_from_headers({"cache-control": "no-cache"})["cache_mode"] == "write-only"


def test_bad_values_name_the_header() -> None:
    with pytest.raises(RequestError, match="x-thrifty-ttl"):
        options_from_headers({"x-thrifty-ttl": "soon"})
    with pytest.raises(RequestError, match="x-thrifty-cache-mode"):
        merge(None, options_from_headers({"x-thrifty-cache-mode": "sometimes"}))
    with pytest.raises(RequestError, match="ttl"):
        validate(ThriftyOptions(ttl=-1))


@pytest.mark.parametrize(("field", "value"), [
    ("ttl", float("nan")), ("ttl", float("inf")), ("ttl", 1e300), ("ttl", 0.0),
    ("threshold", float("nan")), ("quality_target", float("nan")), ("quality_target", float("-inf")),
    ("max_cost_usd", float("nan")), ("max_cost_usd", float("inf")), ("max_cost_usd", -0.01),
])
def test_every_numeric_control_refuses_non_finite_values(field: str, value: float) -> None:
    with pytest.raises(RequestError) as info:
        validate(ThriftyOptions(**{field: value}))
    assert info.value.param == field


def test_string_controls_are_bounded() -> None:
    validate(ThriftyOptions(namespace="n" * 64, task="code"), max_chars=64)
    with pytest.raises(RequestError, match="namespace is 65 characters"):
        validate(ThriftyOptions(namespace="n" * 65), max_chars=64)
    with pytest.raises(RequestError, match="task"):
        validate(ThriftyOptions(task="t" * 65), max_chars=64)


# ---------------------------------------------------------------------------------------------- limits
def _reference_depth(text: str) -> int:
    depth = best = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(alphabet='ab"\\[]{}\n\u00e9'),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(alphabet='k"\\[{', max_size=3),
                                                                     children, max_size=3),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, database=None)
@given(json_values)
def test_json_depth_matches_a_character_by_character_scan(value: object) -> None:
    """Brackets inside strings, escaped quotes and runs of backslashes never fool the vectorised scan."""
    text = json.dumps(value, ensure_ascii=False)
    assert json_depth(text.encode()) == _reference_depth(text)


def test_check_depth() -> None:
    check_depth(b'{"a": [1, 2, {"b": "[[[[[[[[[["}]}', 3)
    check_depth(b"[" * 10 + b"]" * 10, 10)
    with pytest.raises(RequestError, match="nested 11 levels deep; the limit is 10"):
        check_depth(b"[" * 11 + b"]" * 11, 10)


def test_check_request_refuses_non_finite_numbers_and_long_strings() -> None:
    ok = ChatRequest(messages=[Message(role="user", content="hi")], model="m", temperature=0.5,
                     metadata={"k": "v"}, user="u", logit_bias={"1": 2.0})
    check_request(ok, 16)
    for bad, param in [(dict(temperature=float("inf")), "temperature"), (dict(top_p=float("nan")), "top_p"),
                       (dict(logit_bias={"1": float("inf")}), "logit_bias"), (dict(model="m" * 17), "model"),
                       (dict(user="u" * 17), "user"), (dict(metadata={"k": "v" * 17}), "metadata['k']"),
                       (dict(metadata={"k" * 17: "v"}), "metadata key")]:
        with pytest.raises(RequestError) as info:
            check_request(msgspec.structs.replace(ok, **bad), 16)
        assert info.value.param == param


def test_request_id_is_the_clients_only_when_short_and_printable() -> None:
    assert request_id("abc-123", 16) == "abc-123"
    for odd in ("x" * 17, "tab\there", "é", None, ""):
        assert request_id(odd, 16) != odd and len(request_id(odd, 16)) == 32
    check_request_id("abc", 16)
    check_request_id(None, 16)
    with pytest.raises(RequestError, match="x-request-id"):
        check_request_id("x" * 17, 16)
    with pytest.raises(RequestError, match="printable"):
        check_request_id("a\x01b", 16)


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), ("", None), ("1700000000", 1700000000.0), ("2024-01-31", 1706659200.0),
    ("2024-01-31T02:00:00+02:00", 1706659200.0),
])
def test_since_accepts_a_timestamp_or_an_iso_date(raw: str | None, expected: float | None) -> None:
    assert parse_since(raw) == expected


@pytest.mark.parametrize("raw", ["abc", "nan", "inf", "2024-02-30", "yesterday"])
def test_since_refuses_anything_else(raw: str) -> None:
    with pytest.raises(RequestError, match="since"):
        parse_since(raw)
