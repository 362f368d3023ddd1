"""Model names as clients send them, through a live proxy: a ``provider/`` prefix picks the provider, a
dated snapshot id resolves to its catalog entry, and a prefix naming a provider that does not serve
the model is a clear 4xx naming both."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from engine_support import base_config

from bench.fake_upstream import FakeUpstream


def _two_providers(tmp_path: Path, upstream: FakeUpstream) -> dict:
    cfg = base_config(tmp_path, upstream, cache={"enabled": False})
    fake = cfg["providers"][0]
    cfg["providers"] = [{**fake, "name": "openai"}, {**fake, "name": "other"}]
    cfg["routes"] = {"openai": ["*"], "other": ["*"]}
    return cfg


def test_prefix_picks_the_provider_and_snapshots_resolve(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(_two_providers(tmp_path, upstream))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": "hello"}]
    for name, model, provider in [("other/gpt-4o-mini", "gpt-4o-mini", "other"),
                                  ("openai/gpt-4o-mini", "gpt-4o-mini", "openai"),
                                  ("openai/gpt-4o-2024-08-06", "gpt-4o", "openai"),
                                  ("other/claude-3-5-sonnet-20241022", "claude-3-5-sonnet", "other")]:
        raw = client.chat.completions.with_raw_response.create(model=name, messages=msgs)
        assert (raw.headers["x-thrifty-model"], raw.headers["x-thrifty-provider"]) == (model, provider), name
        assert raw.parse().choices[0].message.content
    # What reached the upstream is the provider's own id, without the prefix or the date.
    assert upstream.requests[-1].body["model"] == "claude-3-5-sonnet"


def test_prefix_of_a_provider_that_does_not_serve_it(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(_two_providers(tmp_path, upstream))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:  # "anthropic" is a catalog provider, not configured here
        client.chat.completions.create(model="anthropic/claude-3-5-haiku", messages=[{"role": "user", "content": "x"}])
    assert "anthropic" in str(err.value) and "claude-3-5-haiku" in str(err.value)
    with pytest.raises(openai.BadRequestError, match="unknown model"):
        client.chat.completions.create(model="openai/gpt-7", messages=[{"role": "user", "content": "x"}])
