"""Through a live proxy with the official openai client: the usage chunk only when asked, on a miss and on a
replayed hit; agent code (tools, ``.stream()``, ``parse``) working in simulated mode; unsupported fields
are a 400 naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from engine_support import base_config
from pydantic import BaseModel

from bench.fake_upstream import FakeUpstream

pytestmark = pytest.mark.timeout(60)
WEATHER: Any = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


class Person(BaseModel):
    name: str
    age: int
    tags: list[str]


class GetWeather(BaseModel):
    """Weather for a city."""

    city: str
    unit: str


def _simulated(tmp_path: Path) -> dict[str, Any]:
    return {"data_dir": str(tmp_path / "data"),
            "providers": [{"name": "sim", "kind": "simulated", "simulated": {"latency_ms": [0.0, 0.0]}}],
            "routes": {"sim": ["*"]}}


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="sk-x", max_retries=0)


@pytest.mark.parametrize("where", ["upstream", "simulated"])
def test_usage_chunk_only_when_asked_on_miss_and_hit(where: str, serve, upstream: FakeUpstream,
                                                     tmp_path: Path) -> None:
    config = base_config(tmp_path, upstream) if where == "upstream" else _simulated(tmp_path)
    live, _ = serve(config)
    client = _client(live.url)
    msgs: Any = [{"role": "user", "content": "Write one sentence about the sea."}]
    for outcome in ("miss", "exact"):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=msgs, stream=True)
        assert raw.headers["x-thrifty-cache"] == outcome
        text = "".join(chunk.choices[0].delta.content or "" for chunk in raw.parse())  # the loop everyone writes
        assert text
    asked = [*msgs, {"role": "user", "content": "And one about rivers."}]
    for _ in ("miss", "exact"):
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=asked, stream=True,
                                                     stream_options={"include_usage": True}))
        assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
        assert all(c.choices for c in chunks[:-1])


def test_agent_code_runs_in_simulated_mode(serve, tmp_path: Path) -> None:
    live, _ = serve(_simulated(tmp_path))
    client = _client(live.url)
    msgs: Any = [{"role": "user", "content": "What's the weather in Paris?"}]
    with client.chat.completions.stream(model="gpt-4o-mini", messages=msgs, tools=[WEATHER],
                                        tool_choice="required") as stream:
        final = stream.get_final_completion()
    call = (final.choices[0].message.tool_calls or [])[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=msgs, response_format=Person)
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person)
    tools = client.chat.completions.parse(model="gpt-4o-mini", messages=msgs, tool_choice="required",
                                          tools=[openai.pydantic_function_tool(GetWeather)])
    args = (tools.choices[0].message.tool_calls or [])[0].function.parsed_arguments
    assert isinstance(args, GetWeather)
    many = client.chat.completions.create(model="gpt-4o-mini", messages=msgs, n=2)
    assert [c.index for c in many.choices] == [0, 1] and many.model.startswith("simulated/")


def test_a_field_the_provider_cannot_honour_is_a_400_naming_it(serve, upstream: FakeUpstream,
                                                               tmp_path: Path) -> None:
    config = base_config(tmp_path, upstream)
    config["providers"] = [{"name": "claude", "kind": "anthropic", "base_url": upstream.url}]
    config["routes"] = {"claude": ["*"]}
    live, _ = serve(config)
    client = _client(live.url)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", seed=7,
                                       messages=[{"role": "user", "content": "Pick a number."}])
    assert "'seed'" in caught.value.message and caught.value.param == "seed"
    assert upstream.requests == []
    ok = client.chat.completions.create(model="gpt-4o-mini", n=2,
                                        messages=[{"role": "user", "content": "Pick a number."}])
    assert len(ok.choices) == 2 and len(upstream.requests) == 2
    texts = {0: "", 1: ""}
    for chunk in client.chat.completions.create(model="gpt-4o-mini", n=2, stream=True,
                                                messages=[{"role": "user", "content": "Pick a letter."}]):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts[0] == texts[1] == upstream.answer and len(upstream.requests) == 4
