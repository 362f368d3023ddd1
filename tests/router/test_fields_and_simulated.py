"""No silent drops (every request field x wire format), Anthropic/Cortex emulations, and a simulated
provider that exercises agent code (schema-valid tool arguments and JSON, n choices, streamed too)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_type_hints

import jsonschema
import pytest

from bench.fake_upstream import FakeUpstream, Reply
from models.schema import Route
from router.deadline import Deadline
from router.errors import BadRequest, ProviderError
from router.providers.anthropic_wire import JSON_TOOL, from_anthropic_response, to_anthropic_request
from router.providers.base import ChunkStream, Provider
from router.providers.cortex_wire import to_cortex_request
from router.providers.fields import TABLES, FieldGate, main, markdown
from router.providers.schema_instance import instance
from router.streaming import ChunkAccumulator
from router.types import ChatChunk, ChatRequest, ChatResponse, request_decoder

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]
README = Path(__file__).resolve().parents[2] / "README.md"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string"},
                                                "unit": {"type": "string", "enum": ["c", "f"]}},
                                                "required": ["city", "unit"], "additionalProperties": False}}}
PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "minLength": 2},
    "age": {"type": "integer", "minimum": 18, "maximum": 130},
    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 2},
    "address": {"$ref": "#/$defs/Address"},
    "score": {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5}, {"type": "null"}]},
    "nickname": {"type": ["string", "null"]},
}, "required": ["name", "age", "tags", "address", "score"], "additionalProperties": False,
    "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"},
                                                           "zip": {"type": "string", "maxLength": 5}},
                          "required": ["city", "zip"]}}}


def req(**body: Any) -> ChatRequest:
    body.setdefault("messages", [{"role": "user", "content": "What is the weather in Paris?"}])
    return request_decoder.decode(json.dumps(body).encode())


async def send(provider: Provider, request: ChatRequest) -> ChatResponse | ChunkStream:
    return await provider.send(request, Route(provider=provider.name, model="m-1"), Deadline(5))


async def fold(stream: ChatResponse | ChunkStream) -> tuple[ChatResponse, list[ChatChunk]]:
    assert isinstance(stream, ChunkStream)
    acc, chunks = ChunkAccumulator(), []
    async for chunk in stream:
        acc.feed(chunk)
        chunks.append(chunk)
    return acc.response(), chunks


# ------------------------------------------------------------------------------------------ the tables
def test_every_request_field_has_a_rule_in_every_table() -> None:
    fields = set(ChatRequest.__struct_fields__)
    for kind, table in TABLES.items():
        assert set(table) == fields, kind
        assert table["thrifty"].how == "thrifty"  # thrifty's own controls never reach an upstream
    assert {r.how for r in TABLES["anthropic"].values()} >= {"passed", "translated", "emulated", "rejected"}


def test_every_parameter_of_the_openai_sdk_is_a_request_field() -> None:
    # The SDK's own list of Chat Completions parameters: a new one shows up here before a client sends it.
    from openai.types.chat.completion_create_params import CompletionCreateParamsBase

    assert set(get_type_hints(CompletionCreateParamsBase)) <= set(ChatRequest.__struct_fields__)


def test_readme_table_is_the_generated_one(capsys: pytest.CaptureFixture[str]) -> None:
    text = README.read_text()
    found = re.search(r"<!-- fields-table:begin -->\n(.*?)<!-- fields-table:end -->", text, re.S)
    assert found is not None, "README lacks the generated fields table"
    assert found.group(1) == markdown(), "run: python -m router.providers.fields --markdown"
    assert main(["fields", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown()


@pytest.mark.parametrize(("kind", "body", "field"), [
    ("anthropic", {"seed": 7}, "seed"),
    ("anthropic", {"logprobs": True}, "logprobs"),
    ("anthropic", {"presence_penalty": 0.5}, "presence_penalty"),
    ("anthropic", {"prompt_cache_key": "k"}, "prompt_cache_key"),
    ("cortex", {"stop": ["\n"]}, "stop"),
    ("cortex", {"user": "u1"}, "user"),
    ("openai", {"functions": [{"name": "f", "parameters": {}}]}, "functions"),
    ("simulated", {"function_call": "auto"}, "function_call"),
])
def test_the_gate_rejects_a_field_by_name(kind: str, body: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        FieldGate(kind).check(req(**body), "p1")
    assert caught.value.param == field and caught.value.status == 400 and repr(field) in caught.value.message


def test_the_gate_accepts_no_op_values_and_openai_passes_everything() -> None:
    FieldGate("anthropic").check(req(n=1, logprobs=False, presence_penalty=0, modalities=["text"]), "p1")
    everything = req(seed=1, logprobs=True, top_logprobs=2, n=2, presence_penalty=1.0, reasoning_effort="low",
                     store=True, metadata={"k": "v"}, prompt_cache_key="k", verbosity="low")
    FieldGate("openai").check(everything, "p1")


# ------------------------------------------------------------------------------------------ Anthropic / Cortex
def test_anthropic_json_mode_is_a_forced_tool_and_user_is_translated() -> None:
    body = to_anthropic_request(req(response_format={"type": "json_schema", "json_schema": {
        "name": "person", "schema": PERSON}}, safety_identifier="s-1"), "claude")
    assert body["tools"][-1]["name"] == JSON_TOOL and body["tools"][-1]["input_schema"] == PERSON
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert body["metadata"] == {"user_id": "s-1"}
    tools = to_anthropic_request(req(tools=[WEATHER]), "claude")["tools"]
    assert tools[0]["name"] == "get_weather" and "type" not in tools[0]  # Anthropic's own tool shape


def test_anthropic_reasoning_effort_is_extended_thinking_under_the_callers_cap() -> None:
    assert to_anthropic_request(req(reasoning_effort="medium"), "claude")["thinking"] == {
        "type": "enabled", "budget_tokens": 4096}
    capped = to_anthropic_request(req(reasoning_effort="high", max_completion_tokens=3000), "claude")
    assert capped["thinking"]["budget_tokens"] == 2999 and capped["max_tokens"] == 3000
    assert "thinking" not in to_anthropic_request(req(reasoning_effort="minimal"), "claude")
    answer = from_anthropic_response({"id": "m", "model": "claude", "stop_reason": "end_turn", "content": [
        {"type": "thinking", "thinking": "Let me see...", "signature": "sig"}, {"type": "text", "text": "42"}]})
    assert answer.choices[0].message.content == "42"  # reasoning stays out of the answer, as OpenAI's does


def test_cortex_translates_json_object_instead_of_dropping_it() -> None:
    body = to_cortex_request(req(response_format={"type": "json_object"}), "llama", stream=True)
    assert body["response_format"] == {"type": "json", "schema": {"type": "object"}}


@pytest.mark.parametrize("kind", ["anthropic", "cortex"])
async def test_n_is_fanned_out_and_usage_summed(kind: str, make_provider: Callable[..., Provider],
                                                upstream: FakeUpstream) -> None:
    one = await send(make_provider(kind), req())
    many = await send(make_provider(kind, name=kind + "-n"), req(n=3))
    assert isinstance(one, ChatResponse) and isinstance(many, ChatResponse)
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert len(upstream.requests) == 4 and all("n" not in r.body for r in upstream.requests)
    assert one.usage is not None and many.usage is not None
    assert many.usage.completion_tokens == 3 * one.usage.completion_tokens


@pytest.mark.parametrize("kind", ["anthropic", "cortex"])
async def test_n_streamed_is_merged_into_one_stream(kind: str, make_provider: Callable[..., Provider],
                                                    upstream: FakeUpstream) -> None:
    response, chunks = await fold(await send(make_provider(kind), req(n=2, stream=True)))
    assert [c.index for c in response.choices] == [0, 1]
    assert all(c.message.content == upstream.answer and c.finish_reason == "stop" for c in response.choices)
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    usage = [c for c in chunks if not c.choices]
    assert len(usage) == 1 and usage[0] is chunks[-1] and len(upstream.requests) == 2
    assert response.usage is not None and response.usage.completion_tokens % 2 == 0
    assert {c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role} == {"assistant"}


@pytest.mark.parametrize(("kind", "body", "field"), [
    ("anthropic", {"n": 17}, "n"),
    ("anthropic", {"temperature": 1.5}, "temperature"),
    ("anthropic", {"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format"),
    ("anthropic", {"seed": 3}, "seed"),
    ("anthropic", {"reasoning_effort": "high", "max_tokens": 1000}, "reasoning_effort"),
    ("anthropic", {"reasoning_effort": "low", "temperature": 0.2}, "reasoning_effort"),
    ("anthropic", {"reasoning_effort": "low", "response_format": {"type": "json_object"}}, "reasoning_effort"),
    ("anthropic", {"reasoning_effort": "extreme"}, "reasoning_effort"),
    ("cortex", {"logprobs": True}, "logprobs"),
])
async def test_providers_refuse_before_sending(kind: str, body: dict[str, Any], field: str,
                                               make_provider: Callable[..., Provider], upstream: FakeUpstream) -> None:
    with pytest.raises(BadRequest) as caught:
        await send(make_provider(kind), req(**body))
    assert caught.value.param == field and caught.value.status == 400
    assert upstream.requests == []


# ------------------------------------------------------------------------------------------ simulated
@pytest.mark.parametrize("schema", [
    WEATHER["function"]["parameters"], PERSON, {"type": "object", "properties": {}},
    {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object", "properties": {
        "sku": {"type": "string", "format": "uuid"}, "qty": {"type": "integer", "minimum": 1}},
        "required": ["sku", "qty"]}, "minItems": 1, "maxItems": 3}, "when": {"type": "string", "format": "date"},
        "ok": {"type": "boolean"}, "kind": {"const": "order"}}, "required": ["items", "when", "ok", "kind"]},
    {"type": "object", "properties": {"node": {"$ref": "#"}, "v": {"type": "number", "maximum": -2}},
     "required": ["v"]},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
               {"properties": {"b": {"type": "integer", "exclusiveMaximum": 0}}, "required": ["b"]}]},
])
def test_schema_instances_validate(schema: dict[str, Any]) -> None:
    for seed in range(5):
        jsonschema.validate(instance(schema, random.Random(seed)), schema)


async def test_simulated_tool_calls_validate_and_stream_like_openai(make_provider: Callable[..., Provider]) -> None:
    sim = make_provider("simulated")
    request = req(tools=[WEATHER], tool_choice="required")
    whole = await send(sim, request)
    assert isinstance(whole, ChatResponse) and whole.model.startswith("simulated/")
    call = (whole.choices[0].message.tool_calls or [])[0]
    assert whole.choices[0].finish_reason == "tool_calls" and call.type == "function"
    assert call.id.startswith("call_sim_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    folded, chunks = await fold(await send(sim, req(tools=[WEATHER], tool_choice="required", stream=True)))
    assert folded.choices[0].message.tool_calls == whole.choices[0].message.tool_calls
    deltas = [d for c in chunks for ch in c.choices for d in ch.delta.tool_calls or ()]
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == "get_weather"
    assert len(deltas) > 1 and all(d.id is None and d.function and d.function.name is None for d in deltas[1:])


async def test_simulated_tool_choice_is_honoured(make_provider: Callable[..., Provider]) -> None:
    sim = make_provider("simulated")
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}
    none = await send(sim, req(tools=[WEATHER, clock], tool_choice="none"))
    named = await send(sim, req(tools=[WEATHER, clock], tool_choice={"type": "function",
                                                                    "function": {"name": "get_time"}}))
    after_tool = await send(sim, req(tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"}]))
    assert isinstance(none, ChatResponse) and isinstance(named, ChatResponse) and isinstance(after_tool, ChatResponse)
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content
    assert (named.choices[0].message.tool_calls or [])[0].function.name == "get_time"
    assert after_tool.choices[0].finish_reason == "stop" and after_tool.choices[0].message.content
    with pytest.raises(BadRequest) as caught:
        await send(sim, req(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}))
    assert caught.value.param == "tool_choice"


@pytest.mark.parametrize("stream", [False, True])
async def test_simulated_json_answers_validate_and_n_gives_n_choices(
        stream: bool, make_provider: Callable[..., Provider]) -> None:
    sim = make_provider("simulated")
    request = req(n=3, stream=stream or None, response_format={"type": "json_schema", "json_schema": {
        "name": "person", "strict": True, "schema": PERSON}})
    result = await send(sim, request)
    response = (await fold(result))[0] if stream else result
    assert isinstance(response, ChatResponse) and [c.index for c in response.choices] == [0, 1, 2]
    for choice in response.choices:
        jsonschema.validate(json.loads(choice.message.content or ""), PERSON)
    loose = await send(sim, req(response_format={"type": "json_object"}))
    assert isinstance(loose, ChatResponse)
    assert isinstance(json.loads(loose.choices[0].message.content or ""), dict)
    texts = await send(sim, req(n=2))
    assert isinstance(texts, ChatResponse)
    assert texts.choices[0].message.content != texts.choices[1].message.content


async def test_simulated_max_tokens_cuts_prose_with_finish_length(make_provider: Callable[..., Provider]) -> None:
    cut = await send(make_provider("simulated"), req(max_tokens=3))
    assert isinstance(cut, ChatResponse) and cut.choices[0].finish_reason == "length"
    assert len(cut.choices[0].message.content or "") == 12


async def test_openai_requests_keep_tool_types_and_drop_thrifty_controls(make_provider: Callable[..., Provider]) -> None:
    provider = make_provider("openai")
    request = req(tools=[WEATHER], thrifty={"cache_mode": "off"}, messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"}])
    body = json.loads(provider.encode(request, Route(provider="openai", model="gpt-4o-mini")))  # type: ignore[attr-defined]
    assert body["tools"] == [WEATHER]
    assert body["messages"][1]["tool_calls"][0]["type"] == "function"
    assert "thrifty" not in body and body["model"] == "gpt-4o-mini"


async def test_a_failing_stream_of_a_fan_out_fails_the_merged_stream(make_provider: Callable[..., Provider],
                                                                     upstream: FakeUpstream) -> None:
    upstream.script(Reply(), Reply(cut_after=2))
    stream = await send(make_provider("anthropic"), req(n=2, stream=True))
    with pytest.raises(ProviderError):
        await fold(stream)
    early = await send(make_provider("anthropic", name="early"), req(n=2, stream=True))
    assert isinstance(early, ChunkStream)
    first = await early.__anext__()
    await early.aclose()  # closes both upstream streams; nothing left running
    assert first.choices and first.choices[0].index in (0, 1)
