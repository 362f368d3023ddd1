"""The client matrix: the official ``openai`` SDK, ``langchain-openai``, the ``litellm`` SDK and the
``anthropic`` SDK (on the /v1/messages door), unchanged but for their base URL, against a live proxy on a
miss, an exact hit, a semantic hit (an OpenAI-format upstream behind it), the simulated provider, and a
miss answered by an Anthropic-format upstream. Each cell is recorded in MATRIX (printed at the end); a
test fails when any of its cells failed, naming them all."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import openai
import pytest
from client_matrix import MATRIX
from pydantic import BaseModel
from wire_support import settle

from bench.fake_upstream import FakeUpstream, Reply
from router.types import FunctionCall, ToolCall


class Weather(BaseModel):
    city: str
    temperature_c: int
    sky: Literal["sunny", "cloudy", "rainy"]


class GetWeather(BaseModel):
    """Current weather for a city."""

    city: str


# litellm's types trip a pydantic notice about TypedDict ReadOnly items when first built: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")

WEATHER_JSON = '{"city": "Paris", "temperature_c": 21, "sky": "sunny"}'
CALL = ToolCall(id="call_matrix_1", function=FunctionCall(name="GetWeather", arguments='{"city": "Paris"}'))
TOOLS = [openai.pydantic_function_tool(GetWeather)]
PROMPTS = {  # kind -> (asked first, its paraphrase for the semantic hit)
    "text": ("How do I reverse a list in Python?", "How can I reverse a list in Python?"),
    "tool": ("What's the weather in Paris right now?", "What is the weather in Paris right now?"),
    "json": ("Describe the weather in Paris as JSON.", "Describe the weather in Paris in JSON."),
}
UPSTREAM_REPLY = {"text": Reply(), "tool": Reply(tool_calls=[CALL]), "json": Reply(text=WEATHER_JSON)}


@dataclass
class Target:
    url: str  # the proxy's /v1 base URL
    namespace: str  # each cell has its own cache namespace, so one cell's answers never serve another's

    @property
    def headers(self) -> dict[str, str]:
        return {"x-thrifty-namespace": self.namespace}


def _msgs(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _client(t: Target) -> openai.OpenAI:
    return openai.OpenAI(base_url=t.url, api_key="sk-matrix", max_retries=0, default_headers=t.headers)


# ------------------------------------------------------------------------------------------ openai SDK
def openai_sync(t: Target, prompt: str) -> str:
    r = _client(t).chat.completions.create(model="auto", messages=_msgs(prompt))  # type: ignore[arg-type]
    assert r.choices[0].message.role == "assistant"
    return r.choices[0].message.content or ""


def openai_async(t: Target, prompt: str) -> str:
    async def go() -> str:
        async with openai.AsyncOpenAI(base_url=t.url, api_key="sk-matrix", max_retries=0,
                                      default_headers=t.headers) as client:
            r = await client.chat.completions.create(model="auto", messages=_msgs(prompt))  # type: ignore[arg-type]
            return r.choices[0].message.content or ""

    return asyncio.run(go())


def openai_stream_loop(t: Target, prompt: str) -> str:
    stream = _client(t).chat.completions.create(model="auto", messages=_msgs(prompt), stream=True)  # type: ignore[arg-type]
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream)  # the README's loop, as users write it


def openai_stream_helper(t: Target, prompt: str) -> str:
    with _client(t).chat.completions.stream(model="auto", messages=_msgs(prompt)) as stream:  # type: ignore[arg-type]
        deltas = "".join(e.delta for e in stream if e.type == "content.delta")
        final = stream.get_final_completion()
    assert final.choices[0].message.content == deltas
    return deltas


def openai_parse_model(t: Target, prompt: str) -> str:
    r = _client(t).chat.completions.parse(model="auto", messages=_msgs(prompt), response_format=Weather)  # type: ignore[arg-type]
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, Weather)
    return parsed.model_dump_json()


def openai_parse_tool(t: Target, prompt: str) -> str:
    r = _client(t).chat.completions.parse(model="auto", messages=_msgs(prompt), tools=TOOLS)  # type: ignore[arg-type]
    call = (r.choices[0].message.tool_calls or [])[0]
    assert isinstance(call.function.parsed_arguments, GetWeather), call  # type: ignore[union-attr]
    return call.function.parsed_arguments.model_dump_json()  # type: ignore[union-attr]


def openai_tools(t: Target, prompt: str) -> str:
    r = _client(t).chat.completions.create(model="auto", messages=_msgs(prompt), tools=TOOLS)  # type: ignore[arg-type]
    call = (r.choices[0].message.tool_calls or [])[0]
    assert r.choices[0].finish_reason == "tool_calls" and call.type == "function"
    return f"{call.function.name}({json.loads(call.function.arguments)})"  # type: ignore[union-attr]


def openai_tools_streamed(t: Target, prompt: str) -> str:
    stream = _client(t).chat.completions.create(model="auto", messages=_msgs(prompt), tools=TOOLS, stream=True)  # type: ignore[arg-type]
    name, arguments, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            for d in choice.delta.tool_calls or ():
                name += (d.function.name or "") if d.function else ""
                arguments += (d.function.arguments or "") if d.function else ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    return f"{name}({json.loads(arguments)})"


# ------------------------------------------------------------------------------------------ langchain-openai
def _chat(t: Target) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=t.url, api_key="sk-matrix", model="auto", max_retries=0,  # type: ignore[arg-type]
                      default_headers=t.headers)


def langchain_invoke(t: Target, prompt: str) -> str:
    return str(_chat(t).invoke(prompt).content)


def langchain_stream(t: Target, prompt: str) -> str:
    return "".join(str(part.content) for part in _chat(t).stream(prompt))


def langchain_bind_tools(t: Target, prompt: str) -> str:
    message = _chat(t).bind_tools([GetWeather]).invoke(prompt)
    call = message.tool_calls[0]
    return f"{call['name']}({call['args']})"


def langchain_structured(t: Target, prompt: str) -> str:
    parsed = _chat(t).with_structured_output(Weather).invoke(prompt)
    assert isinstance(parsed, Weather)
    return parsed.model_dump_json()


# ------------------------------------------------------------------------------------------ litellm SDK
def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of its price list
    import litellm

    litellm.telemetry = False
    return litellm


def litellm_completion(t: Target, prompt: str) -> str:
    r = _litellm().completion(model="openai/auto", api_base=t.url, api_key="sk-matrix", messages=_msgs(prompt),
                              extra_headers=t.headers, max_retries=0)
    return r.choices[0].message.content or ""


def litellm_stream(t: Target, prompt: str) -> str:
    stream = _litellm().completion(model="openai/auto", api_base=t.url, api_key="sk-matrix", messages=_msgs(prompt),
                                   extra_headers=t.headers, max_retries=0, stream=True)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream)


# ------------------------------------------------------------------------------------------ anthropic SDK (/v1/messages)
def _anthropic(t: Target) -> Any:
    import anthropic

    return anthropic.Anthropic(base_url=t.url.removesuffix("/v1"), api_key="sk-matrix", max_retries=0,
                               default_headers=t.headers)


def anthropic_create(t: Target, prompt: str) -> str:
    message = _anthropic(t).messages.create(model="auto", max_tokens=256, messages=_msgs(prompt))  # type: ignore[arg-type]
    assert message.role == "assistant" and message.stop_reason == "end_turn"
    return "".join(block.text for block in message.content if block.type == "text")


def anthropic_stream(t: Target, prompt: str) -> str:
    with _anthropic(t).messages.stream(model="auto", max_tokens=256, messages=_msgs(prompt)) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(b.text for b in final.content if b.type == "text") == text
    return text


def anthropic_tools(t: Target, prompt: str) -> str:
    tool = {"name": "GetWeather", "description": "Current weather for a city.",
            "input_schema": GetWeather.model_json_schema()}
    message = _anthropic(t).messages.create(model="auto", max_tokens=256, messages=_msgs(prompt), tools=[tool])  # type: ignore[arg-type,list-item]
    use = next(block for block in message.content if block.type == "tool_use")
    assert message.stop_reason == "tool_use"
    return f"{use.name}({GetWeather.model_validate(use.input)})"


CELLS: dict[str, tuple[str, Callable[[Target, str], str]]] = {
    "openai create (sync)": ("text", openai_sync),
    "openai create (async)": ("text", openai_async),
    "openai stream loop": ("text", openai_stream_loop),
    "openai .stream() helper": ("text", openai_stream_helper),
    "openai parse(pydantic)": ("json", openai_parse_model),
    "openai parse(function_tool)": ("tool", openai_parse_tool),
    "openai tools": ("tool", openai_tools),
    "openai tools streamed": ("tool", openai_tools_streamed),
    "langchain invoke": ("text", langchain_invoke),
    "langchain stream": ("text", langchain_stream),
    "langchain bind_tools": ("tool", langchain_bind_tools),
    "langchain structured_output": ("json", langchain_structured),
    "litellm completion": ("text", litellm_completion),
    "litellm completion stream": ("text", litellm_stream),
    "anthropic messages.create": ("text", anthropic_create),
    "anthropic messages.stream": ("text", anthropic_stream),
    "anthropic tools": ("tool", anthropic_tools),
}


def _attempt(cell: str, path: str, run: Callable[[], str]) -> str | None:
    try:
        result = run()
    except Exception as exc:  # any client error is this cell's failure, recorded with its reason
        MATRIX.record(cell, path, f"FAIL: {type(exc).__name__}: {str(exc)[:300]}")
        return None
    MATRIX.record(cell, path, "pass" if result else "FAIL: empty answer")
    return result or None


@pytest.mark.parametrize("cell", list(CELLS))
def test_client_matrix(cell: str, proxies: dict[str, Any], fake: FakeUpstream) -> None:
    kind, call = CELLS[cell]
    first, paraphrase = PROMPTS[kind]
    upstream = Target(proxies["openai"][0].url + "/v1", namespace=cell.replace(" ", "-").replace("(", "").replace(")", ""))
    fake.script(UPSTREAM_REPLY[kind])
    miss = _attempt(cell, "miss", lambda: call(upstream, first))
    settle(proxies["openai"][1])
    if miss is not None and len(fake.requests) != 1:
        MATRIX.record(cell, "miss", f"FAIL: {len(fake.requests)} upstream requests, expected 1")
    for path, prompt in (("exact hit", first), ("semantic hit", paraphrase)):
        answer = _attempt(cell, path, lambda p=prompt: call(upstream, p))  # type: ignore[misc]
        if answer is not None and len(fake.requests) > 1:
            MATRIX.record(cell, path, "FAIL: went upstream, not to the cache")
        elif answer is not None and miss is not None and answer != miss:
            MATRIX.record(cell, path, f"FAIL: {answer[:60]!r} differs from the miss's {miss[:60]!r}")
    simulated = Target(proxies["simulated"][0].url + "/v1", namespace=upstream.namespace)
    _attempt(cell, "simulated", lambda: call(simulated, first))
    # the same call answered by an Anthropic-format upstream (translated both ways): the same result
    fake.script(UPSTREAM_REPLY[kind])
    via = _attempt(cell, "via Anthropic", lambda: call(Target(proxies["anthropic"][0].url + "/v1", upstream.namespace),
                                                       first))
    if via is not None and fake.requests[-1].path != "/v1/messages":
        MATRIX.record(cell, "via Anthropic", f"FAIL: went to {fake.requests[-1].path}")
    elif via is not None and miss is not None and via != miss:
        MATRIX.record(cell, "via Anthropic", f"FAIL: {via[:60]!r} differs from the OpenAI upstream's {miss[:60]!r}")
    failed = {path: outcome for (c, path), outcome in MATRIX.cells.items() if c == cell and outcome != "pass"}
    assert not failed, failed
