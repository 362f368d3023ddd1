"""Tenancy, as an attacker tries it: tenant globex holds a valid key and every control thrifty offers, and
tries to read acme's cached answers, to plant answers acme is then served, and to overwrite acme's ledger
rows. Real proxy on 127.0.0.1, the real MiniLM encoder (semantic hits are real), the fake upstream behind.

Before issue 11 the requested namespace was the partition key: globex asking with ``x-thrifty-namespace:
acme`` was served acme's answers, exact and semantic, and could write answers acme was then served; the
client's ``x-request-id`` was the ledger's primary key (INSERT OR REPLACE), so globex could overwrite acme's
billed row. Every test below failed then.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from security_support import KEYS, LiveGateway, auth, gateway_config

from bench.fake_upstream import FakeUpstream, Reply
from engine import Engine

SECRET = "ACME-SECRET: the launch code is 0000."
POISON = "POISON: send your password to mallory."
ACME_Q = "What is the capital city of France?"
ACME_PARAPHRASE = "What's the capital city of France?"

# Every namespace globex might try, and how it sends it. "default" and "acme" are acme's namespace and
# tenant name; "faq" is shared by acme and globex, "partners" only granted to initech.
STEALS = ["default", "acme", "globex", "partners", "ACME", "default:acme"]


@pytest.fixture
def gw(upstream: FakeUpstream, tmp_path: Path, minilm: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveGateway]:
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", "admin-secret-for-tests")
    keys = {**KEYS, "initech": "sk-initech-virtual-key"}
    cfg = gateway_config(tmp_path / "data", upstream.url, cache={"encoder": "default"})
    cfg["tenants"] = {name: {"keys": [{"name": f"{name}-key", "key": key}]} for name, key in keys.items()}
    cfg["tenants"]["acme"]["shared_namespaces"] = ["faq"]
    cfg["tenants"]["globex"]["shared_namespaces"] = ["faq"]
    cfg["tenants"]["initech"]["shared_namespaces"] = ["partners"]
    monkeypatch.setenv("THRIFTY_TEST_PROVIDER_KEY", "sk-provider-test")
    live = LiveGateway(Engine.from_config(cfg, encoder=minilm))
    yield live
    live.stop()


def _settle(engine: Engine) -> None:
    """Every cache write and ledger row queued so far has landed."""
    asyncio.run(engine.flush())


def _ask(live: LiveGateway, tenant: str, text: str, *, ns: str | None = None, body_ns: str | None = None,
         stream: bool = False, request_id: str | None = None) -> tuple[str, str, httpx.Response]:
    """(cache outcome, answer text, response) of one chat request from ``tenant``."""
    headers = {**_auth(tenant)}
    if ns is not None:
        headers["x-thrifty-namespace"] = ns
    if request_id is not None:
        headers["x-request-id"] = request_id
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    if body_ns is not None:
        body["thrifty"] = {"namespace": body_ns}
    if stream:
        body["stream"] = True
    r = httpx.post(f"{live.url}/v1/chat/completions", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text[:300]
    if not stream:
        return r.headers["x-thrifty-cache"], r.json()["choices"][0]["message"]["content"], r
    text_out = ""
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            delta = httpx.Response(200, content=line[6:]).json()["choices"]
            if delta and delta[0]["delta"].get("content"):
                text_out += delta[0]["delta"]["content"]
    return r.headers["x-thrifty-cache"], text_out, r


def _auth(tenant: str) -> dict[str, str]:
    return {"authorization": "Bearer sk-initech-virtual-key"} if tenant == "initech" else auth(tenant)


def _controls() -> Iterator[tuple[dict[str, Any], str]]:
    """Every way of naming a namespace, with every name globex might try."""
    for name, how in itertools.product(STEALS, ("header", "body", "both")):
        kw = {"ns": name} if how == "header" else {"body_ns": name} if how == "body" else {"ns": name, "body_ns": name}
        yield kw, f"{how}={name}"


def test_a_tenant_cannot_read_another_tenants_cache(gw: LiveGateway, upstream: FakeUpstream) -> None:
    upstream.script(Reply(text=SECRET))
    assert _ask(gw, "acme", ACME_Q)[:2] == ("miss", SECRET)
    _settle(gw.engine)
    # The controls: acme itself is served its answer, exactly and semantically, streamed or not.
    assert _ask(gw, "acme", ACME_Q)[:2] == ("exact", SECRET)
    assert _ask(gw, "acme", ACME_Q, stream=True)[:2] == ("exact", SECRET)
    assert _ask(gw, "acme", ACME_PARAPHRASE)[:2] == ("hit", SECRET)
    served = []
    for kw, how in [({}, "no namespace"), *_controls()]:
        for text, stream in itertools.product((ACME_Q, ACME_PARAPHRASE), (False, True)):
            # globex's own earlier misses may be served back to it; acme's answer never may.
            outcome, answer, _ = _ask(gw, "globex", text, stream=stream, **kw)
            if SECRET in answer:
                served.append((how, text, stream, outcome))
    assert served == [], f"globex was served acme's cached answer: {served}"


def test_a_tenant_cannot_plant_answers_another_tenant_is_served(gw: LiveGateway, upstream: FakeUpstream) -> None:
    prompts = []
    for n, (kw, how) in enumerate([({}, "none"), *_controls()]):
        prompt = f"How do I reset my account password, case {n}?"
        upstream.script(Reply(text=POISON))
        assert _ask(gw, "globex", prompt, **kw)[1] == POISON, how
        prompts.append((prompt, how))
    _settle(gw.engine)
    poisoned = []
    for prompt, how in prompts:
        for stream in (False, True):  # the first ask must reach the upstream; the second is acme's own entry
            outcome, answer, _ = _ask(gw, "acme", prompt, stream=stream)
            if POISON in answer or (not stream and outcome != "miss"):
                poisoned.append((how, stream, outcome))
            _settle(gw.engine)
    assert poisoned == [], f"acme was served globex's planted answer: {poisoned}"
    # Nor through acme's own use of a namespace name globex wrote under.
    outcome, answer, _ = _ask(gw, "acme", prompts[1][0], ns="default")
    assert POISON not in answer


def test_a_granted_shared_namespace_is_shared_and_only_with_its_grantees(gw: LiveGateway, upstream: FakeUpstream) -> None:
    upstream.script(Reply(text="FAQ: opening hours are 9 to 5."))
    q = "What are your opening hours?"
    assert _ask(gw, "acme", q, ns="faq")[0] == "miss"
    _settle(gw.engine)
    assert _ask(gw, "globex", q, ns="faq")[:2] == ("exact", "FAQ: opening hours are 9 to 5.")
    assert _ask(gw, "globex", "What're your opening hours?", body_ns="faq", stream=True)[0] == "hit"
    # initech is not granted "faq": the same name is its own private namespace.
    assert _ask(gw, "initech", q, ns="faq")[0] == "miss"
    # acme's private default namespace is not the shared one either.
    assert _ask(gw, "acme", q)[0] == "miss"
    # initech's own shared grant ("partners") is not shared with acme, who is not granted it.
    upstream.script(Reply(text="PARTNERS ONLY"))
    assert _ask(gw, "initech", "Partner discount code?", ns="partners")[0] == "miss"
    _settle(gw.engine)
    assert _ask(gw, "acme", "Partner discount code?", ns="partners")[1] != "PARTNERS ONLY"


@pytest.mark.parametrize("bad", ["../acme", "acme/default", "/faq", "a" * 129, "", " faq", "faq\u00e9", "-x"])
def test_namespace_names_are_validated(gw: LiveGateway, bad: str) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEYS["globex"], max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"thrifty": {"namespace": bad}})
    err = info.value.body
    assert isinstance(err, dict) and err.get("param") == "namespace", err


def test_the_clients_request_id_never_touches_another_row(gw: LiveGateway, upstream: FakeUpstream) -> None:
    upstream.script(Reply(text="acme answer"), Reply(text="globex answer"))
    _, _, first = _ask(gw, "acme", "Bill me once for this question", request_id="victim-id")
    ids = [first.headers["x-thrifty-request-id"]]
    assert first.headers["x-request-id"] == "victim-id"  # echoed for correlation
    for n in range(7):  # globex reuses acme's id on seven requests of its own, hits and misses
        _, _, r = _ask(gw, "globex", f"Globex question {n % 2}", request_id="victim-id")
        ids.append(r.headers["x-thrifty-request-id"])
    _settle(gw.engine)
    assert "victim-id" not in ids and len(set(ids)) == 8  # every request got its own server id
    rows = gw.engine.ledger.query("SELECT request_id, tenant, client_request_id, cost_usd FROM requests "
                                  "WHERE client_request_id = 'victim-id' ORDER BY ts")
    assert [r["tenant"] for r in rows] == ["acme"] + ["globex"] * 7  # 8 requests, 8 rows, none replaced
    assert rows[0]["request_id"] == ids[0] and rows[0]["cost_usd"] > 0
    assert gw.engine.ledger.spend(tenant="acme") == pytest.approx(rows[0]["cost_usd"])


def test_admin_purge_names_tenant_and_namespace(gw: LiveGateway, upstream: FakeUpstream) -> None:
    admin = {"authorization": "Bearer admin-secret-for-tests"}
    for tenant in ("acme", "globex"):
        _ask(gw, tenant, "A question both tenants ask")
    _settle(gw.engine)
    purge: Callable[[dict[str, Any]], httpx.Response] = lambda body: httpx.post(  # noqa: E731
        f"{gw.url}/admin/cache/purge", json=body, headers=admin, timeout=10)
    assert purge({"namespace": "default"}).status_code == 400  # whose? a purge must name the tenant
    assert purge({"tenant": "acme"}).json() == {"purged": 1}
    assert _ask(gw, "globex", "A question both tenants ask")[0] == "exact"  # globex's entry is untouched
    assert _ask(gw, "acme", "A question both tenants ask")[0] == "miss"
