"""The references themselves: the OpenAPI validator accepts what OpenAI really sent (the recorded streams)
and refuses documents with the defects issue 12 found, so a green conformance run means something."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk
from wire_references import DATA, schema_errors
from wire_support import sse_data

RECORDED = ["openai_text", "openai_tool_call", "openai_parallel_tools"]
BODY: dict[str, Any] = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1727346168, "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "refusal": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.mark.parametrize("name", RECORDED)
def test_real_openai_chunks_pass_both_references(name: str) -> None:
    data = sse_data((DATA / "transcripts" / f"{name}.sse").read_text())
    for payload in data[:-1]:
        chunk = json.loads(payload)
        assert schema_errors("CreateChatCompletionStreamResponse", chunk) == []
        ChatCompletionChunk.model_validate(chunk, strict=True)


def _without(document: dict[str, Any], *path: str | int) -> dict[str, Any]:
    out = copy.deepcopy(document)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return out


@pytest.mark.parametrize("path", [("object",), ("created",), ("choices", 0, "message", "role"),
                                  ("choices", 0, "message", "tool_calls", 0, "type"),
                                  ("choices", 0, "finish_reason")])
def test_a_body_missing_a_required_field_is_refused(path: tuple[Any, ...]) -> None:
    assert schema_errors("CreateChatCompletionResponse", BODY) == []
    assert schema_errors("CreateChatCompletionResponse", _without(BODY, *path))


def test_a_chunk_without_object_or_with_a_bad_finish_reason_is_refused() -> None:
    chunk = json.loads(sse_data((DATA / "transcripts" / "openai_text.sse").read_text())[0])
    assert schema_errors("CreateChatCompletionStreamResponse", _without(chunk, "object"))
    chunk["choices"][0]["finish_reason"] = "done"
    assert schema_errors("CreateChatCompletionStreamResponse", chunk)


def test_an_error_needs_type_message_param_and_code() -> None:
    ok = {"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}}
    assert schema_errors("ErrorResponse", ok) == []
    assert schema_errors("ErrorResponse", _without(ok, "error", "param"))
    assert schema_errors("ErrorResponse", {"detail": "Not Found"})
