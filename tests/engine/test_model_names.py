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


def _portkey(tmp_path: Path, upstream: FakeUpstream, **extra: object) -> dict:
    cfg = base_config(tmp_path, upstream, cache={"enabled": False}, routes={})
    cfg["providers"] = [{"name": "portkey", "kind": "openai-compatible", "preset": "portkey",
                         "base_url": upstream.url + "/v1", "api_key_env": "PK_KEY", **extra}]
    return cfg


def test_portkey_preset_sends_provider_and_vendor_key_per_model(serve, upstream: FakeUpstream, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PK_KEY", "pk-portkey-secret")
    monkeypatch.setenv("OA_KEY", "sk-openai-secret")
    monkeypatch.setenv("AN_KEY", "sk-ant-secret")
    live, _ = serve(_portkey(tmp_path, upstream, vendor_keys={"openai": "OA_KEY", "anthropic": "AN_KEY"}))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": "hello"}]
    for model, vendor, key in [("gpt-4o-mini", "openai", "sk-openai-secret"),
                               ("claude-3-5-haiku", "anthropic", "sk-ant-secret"),
                               ("mistral-large", "mistral-ai", None)]:  # no key configured for mistral
        for stream in (False, True):
            raw = client.chat.completions.with_raw_response.create(model=model, messages=msgs, stream=stream)
            assert raw.headers["x-thrifty-provider"] == "portkey"
            if stream:
                list(raw.parse())
            sent = upstream.requests[-1].headers
            assert sent["x-portkey-api-key"] == "pk-portkey-secret"
            assert sent["x-portkey-provider"] == vendor
            assert sent.get("authorization") == (f"Bearer {key}" if key else None)
            assert "x-portkey-virtual-key" not in sent


def test_portkey_virtual_key_carries_the_provider(serve, upstream: FakeUpstream, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PK_KEY", "pk-portkey-secret")
    monkeypatch.setenv("OA_KEY", "sk-openai-secret")
    live, _ = serve(_portkey(tmp_path, upstream, params={"virtual_key": "vk-123"}, vendor_keys={"openai": "OA_KEY"}))
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])
    sent = upstream.requests[-1].headers
    assert sent["x-portkey-virtual-key"] == "vk-123" and sent["x-portkey-api-key"] == "pk-portkey-secret"
    assert "x-portkey-provider" not in sent and "authorization" not in sent


def test_portkey_vendor_key_variable_must_be_set(upstream: FakeUpstream, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import Engine
    from router.errors import ConfigError

    monkeypatch.setenv("PK_KEY", "pk-portkey-secret")
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(ConfigError, match="NOPE_KEY"):
        Engine.from_config(_portkey(tmp_path, upstream, vendor_keys={"openai": "NOPE_KEY"}))


def test_portkey_vendor_key_never_leaves_in_an_error(serve, upstream: FakeUpstream, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.fake_upstream import Reply

    monkeypatch.setenv("PK_KEY", "pk-portkey-secret")
    monkeypatch.setenv("OA_KEY", "sk-openai-secret-777")
    live, _ = serve(_portkey(tmp_path, upstream, vendor_keys={"openai": "OA_KEY"}))
    # An upstream that echoes the key it was given (some do, in 401 messages).
    upstream.script(*[Reply.error_status(401, "invalid api key sk-openai-secret-777")] * 4)
    client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert "sk-openai-secret-777" not in err.value.response.text and "invalid api key" in err.value.response.text
