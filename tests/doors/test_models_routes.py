"""``/v1/models`` lists only what a configured provider serves; ``/v1/models/{id}``; unknown routes and
wrong methods get OpenAI-shaped JSON errors that name the served routes."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from anthropic.types import ModelInfo
from doors_support import config

from bench.fake_upstream import FakeUpstream


def test_models_list_and_retrieve_only_served(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(config(tmp_path, upstream, routes={"fake": ["gpt-4o-mini"]}))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="sk-x", max_retries=0)
    assert {m.id for m in client.models.list()} == {"auto", "gpt-4o-mini"}
    model = client.models.retrieve("gpt-4o-mini")
    assert model.id == "gpt-4o-mini" and model.object == "model" and model.owned_by == "openai"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("claude-sonnet-4.5")  # in the catalog, but no configured provider serves it
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_wildcard_route_serves_embedding_models_too(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = serve(config(tmp_path, upstream))
    ids = {m["id"] for m in httpx.get(live.url + "/v1/models").json()["data"]}
    assert {"auto", "text-embedding-3-small"} <= ids and set(engine.catalog.ids) <= ids


def test_unknown_route_and_wrong_method_are_json(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(config(tmp_path, upstream))
    nope = httpx.post(live.url + "/v1/completions", json={"prompt": "hi"})
    assert nope.status_code == 404 and nope.headers["content-type"].startswith("application/json")
    err = nope.json()["error"]
    assert err["code"] == "unknown_route" and "POST /v1/chat/completions" in err["message"]
    assert "POST /v1/messages" in err["message"] and "POST /v1/embeddings" in err["message"]
    wrong = httpx.get(live.url + "/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]


def test_anthropic_sdk_models_list_and_retrieve(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(config(tmp_path, upstream, routes={"fake": ["gpt-4o-mini", "claude-sonnet-4.5"]}))
    claude = anthropic.Anthropic(base_url=live.url, api_key="sk-x", max_retries=0)
    page = claude.models.list()
    assert {m.id for m in page.data} == {"auto", "gpt-4o-mini", "claude-sonnet-4-5"}
    for m in page.data:
        ModelInfo.model_validate(m.model_dump())
    one = claude.models.retrieve("claude-sonnet-4.5")  # an alias: the canonical id comes back
    assert one.id == "claude-sonnet-4-5" and one.type == "model" and one.max_input_tokens and one.created_at.year >= 2025
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.models.retrieve("gpt-5")
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
