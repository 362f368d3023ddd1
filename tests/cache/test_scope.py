"""Scoping: the explicit field lists cover the request type, and keys behave as promised."""

from __future__ import annotations

import msgspec
from cache_helpers import request
from hypothesis import given, settings
from hypothesis import strategies as st

from cache import IGNORED_FIELDS, PARTITION_FIELDS, scope
from router.types import (
    AudioPart,
    ChatRequest,
    FilePart,
    ImagePart,
    ImageURL,
    Message,
    TextPart,
    ThriftyOptions,
)

IGNORED = [name for name, _ in IGNORED_FIELDS]


def test_every_request_field_is_keyed_or_deliberately_ignored() -> None:
    fields = {f.name for f in msgspec.structs.fields(ChatRequest)}
    assert sorted(PARTITION_FIELDS + tuple(IGNORED)) == sorted(fields), "a field is missing or listed twice"
    assert not set(PARTITION_FIELDS) & set(IGNORED)
    assert all(reason for _, reason in IGNORED_FIELDS)


# One alternative value per keyed field (different from the base request's default).
KEYED_CHANGES = {
    "model": "gpt-4o-mini",
    "tools": [{"type": "function", "function": {"name": "f"}}],
    "tool_choice": "none",
    "parallel_tool_calls": False,
    "response_format": {"type": "json_object"},
    "temperature": 0.3,
    "top_p": 0.5,
    "max_tokens": 7,
    "max_completion_tokens": 9,
    "n": 2,
    "stop": ["\n"],
    "seed": 3,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.2,
    "logit_bias": {"50256": -100.0},
    "logprobs": True,
    "top_logprobs": 2,
    "reasoning_effort": "high",
    "modalities": ["text"],
    "audio": {"voice": "alloy"},
    "prediction": {"type": "content", "content": "x"},
    "web_search_options": {},
    "verbosity": "low",
    "moderation": {"model": "omni-moderation-latest"},
    "functions": [{"name": "f", "parameters": {}}],
    "function_call": "none",
}
IGNORED_CHANGES = {
    "stream": True,
    "stream_options": {"include_usage": True},
    "store": True,
    "metadata": {"k": "v"},
    "user": "u1",
    "safety_identifier": "s",
    "prompt_cache_key": "p",
    "prompt_cache_retention": "24h",
    "prompt_cache_options": {"ttl": "1h"},
    "service_tier": "flex",
    "thrifty": {"cache_mode": "read-only", "ttl": 5},
}


def _with(base: ChatRequest, field: str, value: object) -> ChatRequest:
    raw = msgspec.to_builtins(base)
    raw[field] = value
    return msgspec.convert(raw, ChatRequest)


def test_change_lists_cover_every_field() -> None:
    assert set(KEYED_CHANGES) | {"messages"} == set(PARTITION_FIELDS)
    assert set(IGNORED_CHANGES) == set(IGNORED)


texts = st.text(max_size=80)


@settings(max_examples=40, deadline=None)
@given(text=texts, system=texts, field=st.sampled_from(sorted(KEYED_CHANGES)))
def test_keyed_field_changes_partition(text: str, system: str, field: str) -> None:
    base = request(text, system=system)
    a, b = scope(base), scope(_with(base, field, KEYED_CHANGES[field]))
    assert a.partition != b.partition and a.exact_key != b.exact_key
    assert a.text == b.text == text


@settings(max_examples=40, deadline=None)
@given(text=texts, field=st.sampled_from(sorted(IGNORED_CHANGES)))
def test_ignored_field_changes_nothing(text: str, field: str) -> None:
    base = request(text)
    assert scope(base) == scope(_with(base, field, IGNORED_CHANGES[field]))


@settings(max_examples=60, deadline=None)
@given(text=texts, system=texts, ns1=st.text(max_size=12), ns2=st.text(max_size=12))
def test_keys_deterministic_and_namespaces_never_share(text: str, system: str, ns1: str, ns2: str) -> None:
    req = request(text, system=system)
    assert scope(req, ns1) == scope(msgspec.json.decode(msgspec.json.encode(req), type=ChatRequest), ns1)
    if ns1 != ns2:
        assert scope(req, ns1).partition != scope(req, ns2).partition
    assert len(scope(req, ns1).partition) == len(scope(req, ns1).exact_key) == 16


@settings(max_examples=40, deadline=None)
@given(a=texts, b=texts)
def test_semantic_text_changes_exact_key_only(a: str, b: str) -> None:
    sa, sb = scope(request(a)), scope(request(b))
    assert sa.partition == sb.partition
    assert (sa.exact_key == sb.exact_key) == (a == b)


def test_history_and_system_prompt_are_in_the_partition() -> None:
    one = request("and in Paris?", system="A")
    two = request("and in Paris?", system="B")
    three = ChatRequest(messages=[Message(role="user", content="weather in Rome?"),
                                  Message(role="assistant", content="sunny"),
                                  Message(role="user", content="and in Paris?")])
    assert len({scope(one).partition, scope(two).partition, scope(three).partition}) == 3


def test_images_in_the_last_turn_are_in_the_partition() -> None:
    def with_image(url: str) -> ChatRequest:
        parts: list[TextPart | ImagePart | AudioPart | FilePart] = [
            TextPart(text="what is in this picture?"), ImagePart(image_url=ImageURL(url=url))]
        return ChatRequest(messages=[Message(role="user", content=parts)])

    a, b = scope(with_image("http://x/1.png")), scope(with_image("http://x/2.png"))
    assert a.text == b.text == "what is in this picture?"
    assert a.partition != b.partition


def test_non_user_last_turn_is_exact_only() -> None:
    req = ChatRequest(messages=[Message(role="user", content="hi"), Message(role="assistant", content="Hel")])
    s = scope(req)
    assert s.text == "" and s.exact_only
    assert scope(request("")).exact_only


def test_thrifty_namespace_comes_from_the_argument_not_the_body() -> None:
    req = request("x", thrifty=ThriftyOptions(namespace="t1"))
    assert scope(req) == scope(request("x"))
    assert scope(req, "t1").partition != scope(req).partition
