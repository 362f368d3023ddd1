"""The embeddings door with the official ``openai`` SDK: passed to an OpenAI-format upstream, exact-cached
per tenant and per input, costed in the ledger at the catalog's price; simulated vectors are labelled."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from doors_support import config

from bench.fake_upstream import FakeUpstream, Reply
from models.catalog import embedding_models

PRICE = {e.id: e.price.input for e in embedding_models()}
TENANTS = {"tenants": {"acme": {"keys": [{"name": "a", "key": "vk-acme"}]},
                       "zeta": {"keys": [{"name": "z", "key": "vk-zeta"}]}}}


def _client(url: str, key: str = "sk-x") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def test_miss_then_exact_hit_costed_in_ledger(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = serve(config(tmp_path, upstream))
    client = _client(live.url)
    texts = ["The cat sat on the mat.", "Embeddings map text to vectors."]
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=texts)
    first = raw.parse()
    assert raw.headers["x-thrifty-cache"] == "miss" and raw.headers["x-thrifty-provider"] == "fake"
    assert [d.index for d in first.data] == [0, 1] and len(first.data[0].embedding) == 1536
    assert first.usage.prompt_tokens > 0
    cost = float(raw.headers["x-thrifty-cost-usd"])
    assert cost == pytest.approx(first.usage.prompt_tokens * PRICE["text-embedding-3-small"] / 1e6)
    assert upstream.requests[-1].path == "/v1/embeddings" and upstream.requests[-1].body["input"] == texts
    # The same inputs again: an exact hit, nothing sent, nothing paid; the vectors are the same.
    raw2 = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=texts)
    again = raw2.parse()
    assert raw2.headers["x-thrifty-cache"] == "exact" and float(raw2.headers["x-thrifty-cost-usd"]) == 0
    assert len(upstream.requests) == 1
    np.testing.assert_allclose(again.data[1].embedding, first.data[1].embedding, rtol=1e-6)
    # One new input in a batch: only it goes upstream.
    client.embeddings.create(model="text-embedding-3-small", input=[texts[0], "A brand new sentence."], user="u-7")
    assert upstream.requests[-1].body["input"] == ["A brand new sentence."]
    assert upstream.requests[-1].body["user"] == "u-7"
    engine.ledger.flush()
    rows = engine.ledger.query("SELECT cache, cost_usd, saved_usd, task FROM requests ORDER BY ts")
    assert [r["cache"] for r in rows] == ["miss", "exact", "miss"] and {r["task"] for r in rows} == {"embedding"}
    assert rows[0]["cost_usd"] == pytest.approx(cost) and rows[1]["cost_usd"] == 0 and rows[1]["saved_usd"] > 0


def test_cache_is_per_tenant(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(config(tmp_path, upstream, **TENANTS))
    for key in ("vk-acme", "vk-zeta"):
        raw = _client(live.url, key).embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                                         input="shared words")
        assert raw.headers["x-thrifty-cache"] == "miss"  # zeta never reads acme's entry
    assert len(upstream.requests) == 2


def test_base64_dimensions_and_clear_400s(serve, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, _ = serve(config(tmp_path, upstream))
    url = live.url + "/v1/embeddings"
    r = httpx.post(url, json={"model": "text-embedding-3-large", "input": "short", "dimensions": 256,
                              "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    vec = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert vec.shape == (256,) and upstream.requests[-1].body["dimensions"] == 256
    sdk = _client(live.url).embeddings.create(model="text-embedding-3-large", input="short", dimensions=256)
    np.testing.assert_allclose(sdk.data[0].embedding, vec, rtol=1e-6)  # the SDK's own base64 decoding
    cases = [({"input": [[1, 2, 3]]}, "token arrays"), ({"input": ""}, "empty"),
             ({"model": "gpt-4o-mini"}, "not an embedding model"),
             ({"model": "text-embedding-ada-002", "dimensions": 64}, "fixed length"), ({"foo": 1}, "foo")]
    for extra, says in cases:
        body = {"model": "text-embedding-3-small", "input": "hello", **extra}
        bad = httpx.post(url, json=body)
        assert bad.status_code == 400 and says in bad.json()["error"]["message"], bad.text
    upstream.script(Reply.error_status(500), Reply.error_status(500))
    failed = httpx.post(url, json={"model": "text-embedding-3-small", "input": "fails upstream"})
    assert failed.status_code == 502 and "error" in failed.json()


def test_simulated_vectors_are_labelled_and_deterministic(serve, tmp_path: Path) -> None:
    live, _ = serve({"data_dir": str(tmp_path / "data"), "providers": [{"name": "simulated", "kind": "simulated"}]})
    client = _client(live.url)
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "b"],
                                                     extra_headers={"x-thrifty-cache-mode": "off"})
    out = raw.parse()
    assert out.model == "simulated/text-embedding-3-small" and raw.headers["x-thrifty-cache"] == "bypass"
    again = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"],
                                     extra_headers={"x-thrifty-cache-mode": "off"})
    assert again.data[0].embedding == out.data[0].embedding != out.data[1].embedding
    assert np.linalg.norm(out.data[0].embedding) == pytest.approx(1.0, rel=1e-5)
