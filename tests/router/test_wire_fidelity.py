"""Every answer and chunk thrifty builds is what the spec and the official SDK expect, on every path.

References nobody here wrote: the OpenAI OpenAPI description (tests/data/openapi/, a verbatim excerpt),
the openai SDK's pydantic types in strict mode, and the SDK's own stream accumulator
(``ChatCompletionStreamState``) for folding deltas shaped exactly as OpenAI sends them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from router.chunks import response_chunks
from router.providers.anthropic_wire import (
    JSON_TOOL,
    StreamTranslator,
    from_anthropic_response,
    to_anthropic_events,
    to_anthropic_request,
)
from router.providers.cortex_wire import CortexStreamTranslator
from router.streaming import ChunkAccumulator
from router.types import (
    ChatChunk,
    ChatResponse,
    Choice,
    FunctionCall,
    ResponseMessage,
    ToolCall,
    Usage,
    chunk_decoder,
    encoder,
    request_decoder,
    response_decoder,
)

OPENAPI = Path(__file__).resolve().parents[1] / "data" / "openapi" / "openai_wire_schemas.json"
CALLS = [ToolCall(id="call_a", function=FunctionCall(name="get_weather", arguments='{"city": "Paris", "unit": "c"}')),
         ToolCall(id="call_b", function=FunctionCall(name="get_time", arguments='{"tz": "Europe/Paris"}'))]


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` (left on a few properties of the file) spelled as JSON Schema."""
    if isinstance(node, dict):
        out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
        return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") is True else out
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    defs = _nullable(json.loads(OPENAPI.read_text())["$defs"])
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": defs})


def check_response(response: ChatResponse) -> dict[str, Any]:
    """The encoded answer validates against the OpenAPI schema and the SDK's type; returns it as JSON."""
    doc = json.loads(encoder.encode(response))
    errors = [e.message for e in _validator("CreateChatCompletionResponse").iter_errors(doc)]
    assert not errors, (errors, doc)
    ChatCompletion.model_validate(doc, strict=True)
    return doc


def check_chunks(chunks: list[ChatChunk]) -> list[dict[str, Any]]:
    docs = [json.loads(encoder.encode(c)) for c in chunks]
    for doc in docs:
        errors = [e.message for e in _validator("CreateChatCompletionStreamResponse").iter_errors(doc)]
        assert not errors, (errors, doc)
        ChatCompletionChunk.model_validate(doc, strict=True)
    return docs


def answer(content: str | None = "Hi.", calls: list[ToolCall] | None = None, finish: str = "stop") -> ChatResponse:
    return ChatResponse(id="r1", model="m", choices=[Choice(index=0, message=ResponseMessage(
        content=content, tool_calls=calls), finish_reason=finish)], usage=Usage(prompt_tokens=3, completion_tokens=2,
                                                                                 total_tokens=5))


# ------------------------------------------------------------------------------------------ responses
def test_required_fields_are_encoded_even_at_their_defaults() -> None:
    doc = check_response(answer(content=None, calls=CALLS[:1], finish="tool_calls"))
    message = doc["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"] is None and message["refusal"] is None
    assert message["tool_calls"][0]["type"] == "function"
    assert doc["object"] == "chat.completion" and doc["created"] > 0
    assert doc["choices"][0]["logprobs"] is None
    zero = json.loads(encoder.encode(Usage()))
    assert zero == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_a_minimal_upstream_body_is_decoded_and_re_encoded_complete() -> None:
    body = b'{"id":"x","model":"m","choices":[{"index":0,"message":{"content":"ok"},"finish_reason":"stop"}]}'
    doc = check_response(response_decoder.decode(body))
    assert doc["choices"][0]["message"] == {"role": "assistant", "content": "ok", "refusal": None}


def test_anthropic_translations_are_complete_answers() -> None:
    base = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "stop_reason": "tool_use",
            "usage": {"input_tokens": 5, "output_tokens": 7}}
    text = check_response(from_anthropic_response(base | {"content": [{"type": "text", "text": "Hi"}],
                                                          "stop_reason": "end_turn"}))
    assert text["choices"][0]["message"]["content"] == "Hi"
    tools = check_response(from_anthropic_response(base | {"content": [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]}))
    assert tools["choices"][0]["finish_reason"] == "tool_calls"
    assert tools["choices"][0]["message"]["tool_calls"][0]["type"] == "function"
    # Emulated JSON mode: the forced tool's input is the answer's text, and the finish is a plain stop.
    emulated = check_response(from_anthropic_response(base | {"content": [
        {"type": "tool_use", "id": "toolu_2", "name": JSON_TOOL, "input": {"answer": 42}}]}))
    choice = emulated["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"answer": 42}
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]


# ------------------------------------------------------------------------------------------ chunks
def test_replayed_stream_is_shaped_like_openai_and_folds_back() -> None:
    full = answer(content="A fairly long answer that will be cut into several pieces for the stream.",
                  calls=CALLS, finish="tool_calls")
    chunks = list(response_chunks(full, include_usage=True, chunk_chars=7))
    docs = check_chunks(chunks)
    assert all(d["object"] == "chat.completion.chunk" and d["created"] == full.created for d in docs)
    calls = [tc for d in docs for c in d["choices"] for tc in c["delta"].get("tool_calls", ())]
    for call in CALLS:
        pieces = [tc for tc in calls if tc.get("id") == call.id or tc["index"] == CALLS.index(call)]
        first, rest = pieces[0], pieces[1:]
        assert first["id"] == call.id and first["type"] == "function" and first["function"]["name"]
        assert rest and all("name" not in p["function"] and "id" not in p for p in rest)
    assert docs[-1]["choices"] == [] and docs[-1]["usage"]["total_tokens"] == 5
    assert not [d for d in docs[:-1] if not d["choices"]]
    acc = ChunkAccumulator()
    for chunk in chunks:
        acc.feed(chunk)
    assert acc.response().choices[0].message == full.choices[0].message
    no_usage = list(response_chunks(full))
    assert all(c.choices for c in no_usage)


def test_anthropic_and_cortex_stream_translations_are_valid_chunks() -> None:
    full = answer(content="Hello there", calls=CALLS[:1], finish="tool_calls")
    translator = StreamTranslator()
    events = to_anthropic_events(full, ["Hello", " there"])
    events.insert(2, {"type": "ping"})
    anthropic = [c for c in (translator.feed(e) for e in events) if c is not None]
    docs = check_chunks(anthropic)
    assert len({d["created"] for d in docs}) == 1
    cortex = CortexStreamTranslator()
    out = [c for c in (cortex.feed({"id": "c1", "model": "llama", "choices": [{"delta": d}]}) for d in (
        {"type": "text", "content": "Hi"},
        {"type": "tool_use", "tool_use_id": "t1", "name": "get_weather", "input": '{"city":'},
        {"type": "tool_use", "tool_use_id": "t1", "name": "get_weather", "input": '"Paris"}'},
    )) if c is not None]
    cortex.usage = Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)
    docs = check_chunks(out + cortex.closing())
    later = docs[2]["choices"][0]["delta"]["tool_calls"][0]
    assert "name" not in later["function"] and "id" not in later


def test_anthropic_stream_of_emulated_json_mode_is_plain_text() -> None:
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                              "model": "claude", "content": [], "usage": {"input_tokens": 4}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"a": '}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "1}"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    translator = StreamTranslator()
    chunks = [c for c in (translator.feed(e) for e in events) if c is not None]
    check_chunks(chunks)
    acc = ChunkAccumulator()
    for chunk in chunks:
        acc.feed(chunk)
    choice = acc.response().choices[0]
    assert json.loads(choice.message.content or "") == {"a": 1}
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"


# ------------------------------------------------------------------------------------------ OpenAI deltas
def _openai_stream(split: int) -> list[bytes]:
    """Two tool calls interleaved by index, exactly as OpenAI streams them: id, type and name only in a
    call's first chunk, ``arguments`` cut at byte ``split`` (and every later chunk carries only pieces)."""
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1730000000, "model": "gpt-4o-mini",
            "system_fingerprint": "fp_1"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return json.dumps(head | {"choices": [{"index": 0, "delta": delta, "logprobs": None,
                                               "finish_reason": finish}]}).encode()

    a, b = CALLS[0].function.arguments, CALLS[1].function.arguments
    out = [chunk({"role": "assistant", "content": None, "refusal": None})]
    out.append(chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                      "function": {"name": "get_weather", "arguments": ""}}]}))
    out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": a[:split]}}]}))
    out.append(chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                      "function": {"name": "get_time", "arguments": b[:split]}}]}))
    out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": a[split:]}}]}))
    out.append(chunk({"tool_calls": [{"index": 1, "function": {"arguments": b[split:]}}]}))
    out.append(chunk({}, "tool_calls"))
    return out


@pytest.mark.parametrize("split", range(0, len(CALLS[1].function.arguments) + 1))
def test_openai_tool_call_deltas_fold_as_the_sdk_folds_them(split: int) -> None:
    raw = _openai_stream(split)
    acc = ChunkAccumulator()
    sdk = ChatCompletionStreamState()
    for data in raw:
        acc.feed(chunk_decoder.decode(data))
        sdk.handle_chunk(ChatCompletionChunk.model_validate_json(data))
    ours = acc.response()
    reference = sdk.get_final_completion()
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in ours.choices[0].message.tool_calls or ()] \
        == [(c.id, c.type, c.function.name, c.function.arguments) for c in reference.choices[0].message.tool_calls or ()]
    assert ours.choices[0].finish_reason == "tool_calls"
    check_response(ours)


def test_decoded_chunks_re_encode_without_inventing_a_name() -> None:
    later = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,' \
            b'"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\""}}]},"finish_reason":null}]}'
    doc = msgspec.json.decode(encoder.encode(chunk_decoder.decode(later)))
    assert doc["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": '{"a"'}}]
    assert doc["choices"][0]["finish_reason"] is None


def test_an_echoed_answer_is_accepted_in_the_history_and_annotations_are_kept() -> None:
    upstream = (b'{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
                b'"message":{"role":"assistant","content":"See [1].","refusal":null,"annotations":[{"type":'
                b'"url_citation","url_citation":{"start_index":4,"end_index":7,"title":"T","url":"https://e.x/"}}]},'
                b'"logprobs":null,"finish_reason":"stop"}]}')
    doc = check_response(response_decoder.decode(upstream))
    echoed = doc["choices"][0]["message"]
    assert echoed["annotations"][0]["type"] == "url_citation"
    # The openai SDK sends ``choices[0].message`` back as is: refusal, annotations and all.
    request = request_decoder.decode(json.dumps({"messages": [
        {"role": "user", "content": "Cite something."}, echoed, {"role": "user", "content": "More?"}]}).encode())
    assert request.messages[1].annotations == echoed["annotations"]
    assert to_anthropic_request(request, "claude")["messages"][1] == {"role": "assistant", "content": "See [1]."}


def _fold_cortex(events: list[dict[str, Any]]) -> ChatResponse:
    translator, acc = CortexStreamTranslator(), ChunkAccumulator()
    chunks = [c for c in (translator.feed(e) for e in events) if c is not None] + translator.closing()
    check_chunks(chunks)
    for chunk in chunks:
        acc.feed(chunk)
    return acc.response()


def test_cortex_tool_input_without_its_id_belongs_to_the_call_started_last() -> None:
    recorded = Path(__file__).resolve().parents[1] / "data" / "transcripts" / "cortex_tool_use.sse"
    events = [json.loads(line[5:]) for line in recorded.read_text().splitlines() if line.startswith("data:")]
    assert any(e["choices"][0]["delta"].get("type") == "tool_use" and "tool_use_id" not in e["choices"][0]["delta"]
               for e in events if e.get("choices"))  # the recording has the id-less shape this test is about
    message = _fold_cortex(events).choices[0].message
    assert message.tool_calls and message.tool_calls[0].id == "tooluse_FB_nOElDTAOKa-YnVWI5Uw"
    assert json.loads(message.tool_calls[0].function.arguments) == {"symbol": "NVDA"}
    # The older shape in Snowflake's REST reference: no delta.type, the call inside content_list.
    older = [{"id": "c", "model": "m", "choices": [{"delta": {"content_list": [
        {"tool_use_id": "t9", "name": "lookup", "input": ""}]}}]},
             {"id": "c", "model": "m", "choices": [{"delta": {"content_list": [{"input": '{"q": '}]}}]},
             {"id": "c", "model": "m", "choices": [{"delta": {"content_list": [{"input": '"tides"}'}]}}]}]
    response = _fold_cortex(older)
    call = (response.choices[0].message.tool_calls or [])[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("t9", "lookup", {"q": "tides"})
    assert response.choices[0].finish_reason == "tool_calls"
