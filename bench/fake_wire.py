"""The fake upstream's renderers: an answer drawn in each provider's own wire shape.

Written from the providers' recorded streams (tests/data/transcripts/, from the official SDKs' test
fixtures), not from thrifty's translators: a fake that rendered with thrifty's own code would agree with
thrifty's decoders by construction and prove nothing. Shapes kept on purpose:

- OpenAI: ``object``, ``created``, ``system_fingerprint``, ``logprobs: null`` on every chunk; a tool call's
  ``id``, ``type`` and ``name`` only in its first chunk, its arguments split over the following chunks;
  the usage chunk (``choices: []``) only when the request asked for it; ``data: [DONE]``.
- Cortex: see ``cortex_events``.
- Anthropic: ``message_start``, ``content_block_start``, a ``ping``, ``text_delta`` / ``input_json_delta``
  (the first one empty, as recorded), ``content_block_stop``, ``message_delta`` with the output usage,
  ``message_stop``; every event framed with its ``event:`` line.
"""

from __future__ import annotations

from typing import Any

import msgspec

from router.types import ChatResponse, Usage

_enc = msgspec.json.Encoder()
FINGERPRINT = "fp_fake_upstream"
ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def pieces(text: str, size: int = 12) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def openai_usage(u: Usage | None) -> dict[str, Any] | None:
    return msgspec.to_builtins(u) if u is not None else None


def openai_body(full: ChatResponse) -> dict[str, Any]:
    """A non-streamed chat.completion, as OpenAI sends it."""
    choices = []
    for c in full.choices:
        message: dict[str, Any] = {"role": "assistant", "content": c.message.content, "refusal": None,
                                   "annotations": []}
        if c.message.tool_calls:
            message["tool_calls"] = [{"id": t.id, "type": "function", "function": {
                "name": t.function.name, "arguments": t.function.arguments}} for t in c.message.tool_calls]
        choices.append({"index": c.index, "message": message, "logprobs": None, "finish_reason": c.finish_reason})
    return {"id": full.id, "object": "chat.completion", "created": full.created, "model": full.model,
            "choices": choices, "usage": openai_usage(full.usage), "service_tier": "default",
            "system_fingerprint": FINGERPRINT}


def openai_events(full: ChatResponse, *, include_usage: bool, finish: bool = True, done: bool = True) -> list[bytes]:
    """A streamed chat.completion as OpenAI's SSE: ``data: {chunk}`` events, then ``data: [DONE]``."""
    head = {"id": full.id, "object": "chat.completion.chunk", "created": full.created, "model": full.model,
            "system_fingerprint": FINGERPRINT}

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + _enc.encode({**head, "choices": [choice]}) + b"\n\n"

    events: list[bytes] = []
    for c in full.choices:  # n > 1: each choice's chunks in turn, told apart by ``index``
        message = c.message
        events.append(chunk(c.index, {"role": "assistant", "content": "" if message.content else None,
                                      "refusal": None}))
        events.extend(chunk(c.index, {"content": p}) for p in (pieces(message.content) if message.content else []))
        for i, call in enumerate(message.tool_calls or []):
            events.append(chunk(c.index, {"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                                          "function": {"name": call.function.name, "arguments": ""}}]}))
            events.extend(chunk(c.index, {"tool_calls": [{"index": i, "function": {"arguments": p}}]})
                          for p in pieces(call.function.arguments, 5))
        if finish:
            events.append(chunk(c.index, {}, c.finish_reason))
    if include_usage:
        events.append(b"data: " + _enc.encode({**head, "choices": [], "usage": openai_usage(full.usage)}) + b"\n\n")
    if done:
        events.append(b"data: [DONE]\n\n")
    return events


def anthropic_usage(u: Usage | None) -> dict[str, int]:
    """Anthropic counts cache reads apart from ``input_tokens``; OpenAI's ``prompt_tokens`` include them."""
    if u is None:
        return {"input_tokens": 0, "output_tokens": 0}
    cached = u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else 0
    return {"input_tokens": u.prompt_tokens - cached, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached, "output_tokens": u.completion_tokens}


def _anthropic_blocks(full: ChatResponse) -> list[dict[str, Any]]:
    message = full.choices[0].message
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for call in message.tool_calls or []:
        arguments = msgspec.json.decode(call.function.arguments) if call.function.arguments else {}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name, "input": arguments})
    return blocks


def anthropic_body(full: ChatResponse) -> dict[str, Any]:
    """A non-streamed Messages API answer."""
    return {"id": full.id, "type": "message", "role": "assistant", "model": full.model,
            "content": _anthropic_blocks(full), "stop_sequence": None, "usage": anthropic_usage(full.usage),
            "stop_reason": ANTHROPIC_STOP.get(full.choices[0].finish_reason or "stop", "end_turn")}


def anthropic_events(full: ChatResponse, *, finish: bool = True, done: bool = True) -> list[bytes]:
    """A streamed Messages API answer: typed events, each with its ``event:`` line."""
    usage = anthropic_usage(full.usage)
    start: dict[str, Any] = {"id": full.id, "type": "message", "role": "assistant", "model": full.model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(_anthropic_blocks(full)):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
        else:
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {**block, "input": {}}})
            arguments = _enc.encode(block["input"]).decode()
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *pieces(arguments, 7)]]
        if index == 0:
            events.append({"type": "ping"})
        events.extend({"type": "content_block_delta", "index": index, "delta": d} for d in deltas)
        events.append({"type": "content_block_stop", "index": index})
    if finish:
        stop = ANTHROPIC_STOP.get(full.choices[0].finish_reason or "stop", "end_turn")
        events.append({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                       "usage": {"output_tokens": usage["output_tokens"]}})
        if done:
            events.append({"type": "message_stop"})
    return [b"event: %s\ndata: %s\n\n" % (e["type"].encode(), _enc.encode(e)) for e in events]


def cortex_events(full: ChatResponse, *, include_usage: bool) -> list[bytes]:
    """A streamed Cortex ``inference:complete`` answer as recorded (tests/data/transcripts/cortex_tool_use.sse):
    text deltas; a tool call's ``tool_use_id`` and ``name`` only in its first delta, its input in the next ones;
    ``usage`` ``{}`` until the last event carries the counts; no ``[DONE]``."""
    message = full.choices[0].message
    deltas: list[dict[str, Any]] = [{"type": "text", "content": p, "content_list": [{"type": "text", "text": p}],
                                     "text": p} for p in (pieces(message.content) if message.content else [])]
    for call in message.tool_calls or []:
        deltas.append({"type": "tool_use", "tool_use_id": call.id, "name": call.function.name, "text": "",
                       "content_list": [{"tool_use_id": call.id, "name": call.function.name}]})
        deltas.extend({"type": "tool_use", "input": p, "content_list": [{"input": p}], "text": ""}
                      for p in pieces(call.function.arguments, 9))
    events = [{"id": full.id, "model": full.model, "choices": [{"delta": d}], "usage": {}} for d in deltas]
    if include_usage and events and full.usage is not None:
        u = full.usage
        events[-1]["usage"] = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                               "total_tokens": u.total_tokens}
    return [b"data: " + _enc.encode(e) + b"\n\n" for e in events]
