"""What each wire format does with every ChatRequest field: passed, translated, emulated or rejected.

No field is dropped silently. The tables are data: ``FieldGate`` enforces them at request time (a field
a format rejects is a 400 naming it, before anything is sent), and ``markdown()`` renders the README's
table from them (``python -m router.providers.fields --markdown``), so the documentation cannot drift
from what the code does. A test checks that every ChatRequest field has a row in every table.

A value in a rule's ``noop`` means the same as leaving the field out (``n=1``, ``logprobs=false``), so
it is accepted where the field itself is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from router.errors import BadRequest
from router.types import ChatRequest

How = Literal["passed", "translated", "emulated", "rejected", "thrifty", "accepted"]


class Rule(msgspec.Struct, frozen=True):
    how: How
    note: str = ""
    noop: tuple[Any, ...] = ()


def _r(how: How, note: str = "", *noop: Any) -> Rule:
    return Rule(how, note, tuple(noop))


_THRIFTY = _r("thrifty", "thrifty's own controls; never sent upstream")
# Answers to these would carry ``message.function_call``, which thrifty's answers do not: refused everywhere.
_LEGACY = _r("rejected", "deprecated: use `tools` / `tool_choice`")

OPENAI: dict[str, Rule] = {name: _r("passed") for name in ChatRequest.__struct_fields__} | {
    "model": _r("translated", "the routed deployment's model id"),
    "stream_options": _r("translated", "`include_usage` always asked upstream; the usage chunk "
                                       "reaches the client only if it asked"),
    "functions": _LEGACY,
    "function_call": _LEGACY,
    "thrifty": _THRIFTY,
}

_REJECT = _r("rejected")
ANTHROPIC: dict[str, Rule] = {
    "messages": _r("translated", "system/developer → `system`; tool calls and results → blocks"),
    "model": _r("translated", "the routed deployment's model id"),
    "temperature": _r("passed", "0–1; a higher value is rejected"),
    "top_p": _r("passed"),
    "max_tokens": _r("translated", "`max_tokens` (default 4096)"),
    "max_completion_tokens": _r("translated", "`max_tokens`"),
    "n": _r("emulated", "n parallel calls (streamed: merged), one choice each", 1),
    "stop": _r("translated", "`stop_sequences`"),
    "seed": _REJECT,
    "presence_penalty": _r("rejected", "", 0, 0.0),
    "frequency_penalty": _r("rejected", "", 0, 0.0),
    "logit_bias": _r("rejected", "", {}),
    "logprobs": _r("rejected", "", False),
    "top_logprobs": _r("rejected", "", 0),
    "tools": _r("translated", "`tools[].input_schema`"),
    "tool_choice": _r("translated", "`auto`/`any`/`none`/`tool`"),
    "parallel_tool_calls": _r("translated", "`disable_parallel_tool_use`"),
    "response_format": _r("emulated", "JSON through a forced tool whose input schema is the format's; "
                                      "rejected together with `tools`", None),
    "reasoning_effort": _r("translated", "`thinking.budget_tokens` (low 1024, medium 4096, high 16384, "
                                         "xhigh 24576, max 28672; none/minimal: off); rejected where thinking "
                                         "cannot run"),
    "modalities": _r("rejected", "", ["text"]),
    "audio": _REJECT,
    "prediction": _REJECT,
    "web_search_options": _REJECT,
    "verbosity": _REJECT,
    "service_tier": _REJECT,
    "stream": _r("translated", "Anthropic events → chunks"),
    "stream_options": _r("emulated", "usage chunk built from Anthropic's usage events"),
    "store": _r("rejected", "", False),
    "metadata": _r("rejected", "", {}),
    "user": _r("translated", "`metadata.user_id`"),
    "safety_identifier": _r("translated", "`metadata.user_id` (wins over `user`)"),
    "prompt_cache_key": _REJECT,
    "prompt_cache_retention": _REJECT,
    "prompt_cache_options": _REJECT,
    "moderation": _REJECT,
    "functions": _LEGACY,
    "function_call": _LEGACY,
    "thrifty": _THRIFTY,
}

CORTEX: dict[str, Rule] = {name: _REJECT for name in ChatRequest.__struct_fields__} | {
    "messages": _r("translated", "tool calls and results → `content_list`; images rejected"),
    "model": _r("translated", "the routed deployment's model id"),
    "temperature": _r("passed"),
    "top_p": _r("passed"),
    "max_tokens": _r("passed"),
    "max_completion_tokens": _r("translated", "`max_tokens`"),
    "n": _r("emulated", "n parallel calls (streamed: merged), one choice each", 1),
    "presence_penalty": _r("rejected", "", 0, 0.0),
    "frequency_penalty": _r("rejected", "", 0, 0.0),
    "logit_bias": _r("rejected", "", {}),
    "logprobs": _r("rejected", "", False),
    "top_logprobs": _r("rejected", "", 0),
    "tools": _r("translated", "`tool_spec` (generic)"),
    "tool_choice": _r("translated"),
    "parallel_tool_calls": _r("rejected", "", True),
    "response_format": _r("translated", "`{type: json, schema}`"),
    "modalities": _r("rejected", "", ["text"]),
    "stream": _r("translated", "Cortex always streams; a non-streaming call gets the stream folded"),
    "stream_options": _r("emulated", "usage chunk from Cortex's usage"),
    "store": _r("rejected", "", False),
    "metadata": _r("rejected", "", {}),
    "functions": _LEGACY,
    "function_call": _LEGACY,
    "thrifty": _THRIFTY,
}

_NO_EFFECT = _r("accepted", "no effect on a simulated answer")
SIMULATED: dict[str, Rule] = {name: _NO_EFFECT for name in ChatRequest.__struct_fields__} | {
    "messages": _r("emulated", "the answer quotes the last message"),
    "model": _r("translated", "answers as `simulated/<model>`"),
    "max_tokens": _r("emulated", "caps the answer's length"),
    "max_completion_tokens": _r("emulated", "caps the answer's length"),
    "n": _r("emulated", "n different choices"),
    "tools": _r("emulated", "tool calls whose arguments validate against the tool's schema"),
    "tool_choice": _r("emulated", "`none`, `auto`, `required` or one named tool"),
    "parallel_tool_calls": _r("emulated", "false: one call at most"),
    "response_format": _r("emulated", "JSON that validates against the schema"),
    "stream": _r("emulated", "OpenAI-shaped chunks, tool calls in pieces"),
    "stream_options": _r("emulated", "usage chunk only when asked"),
    "functions": _LEGACY,
    "function_call": _LEGACY,
    "thrifty": _THRIFTY,
}

TABLES: dict[str, Mapping[str, Rule]] = {
    "openai": OPENAI,
    "openai-compatible": OPENAI,
    "anthropic": ANTHROPIC,
    "cortex": CORTEX,
    "simulated": SIMULATED,
}


class FieldGate:
    """One wire format's rejections, checked per request: a short loop over the rejected fields only."""

    __slots__ = ("_checks", "_kind")

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._checks = tuple((name, rule.noop) for name, rule in TABLES[kind].items() if rule.how == "rejected")

    def check(self, request: ChatRequest, provider: str) -> None:
        for name, noop in self._checks:
            value = getattr(request, name)
            if value is not None and value not in noop:
                raise unsupported(name, provider, self._kind)


class UnsupportedField(BadRequest):
    """A field this provider cannot honour, found before anything was sent: another candidate (another
    wire format) may still serve the request, so dispatch may fall back instead of failing."""

    kind = "unsupported_field"


def unsupported(field: str, provider: str, kind: str, why: str = "") -> UnsupportedField:
    """The 400 for a field this provider cannot honour: it names the field, never drops it."""
    detail = f" ({why})" if why else ""
    return UnsupportedField(f"request field {field!r} is not supported by provider {provider!r} ({kind} wire format)"
                      f"{detail}; remove it or pin a model served by an OpenAI-format provider",
                      provider=provider, status=400, param=field, type="invalid_request_error")


def _cell(rule: Rule) -> str:
    return f"{rule.how}: {rule.note}" if rule.note else rule.how


def markdown() -> str:
    """The README table: one row per ChatRequest field, one column per wire format."""
    kinds = list(TABLES)
    lines = ["| field | " + " | ".join(kinds) + " |", "|---" * (len(kinds) + 1) + "|"]
    for name in ChatRequest.__struct_fields__:
        lines.append(f"| `{name}` | " + " | ".join(_cell(TABLES[k][name]) for k in kinds) + " |")
    return "\n".join(lines) + "\n"
