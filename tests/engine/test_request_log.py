"""GET /admin/requests: ledger rows with their routing explanation, filters, cursor pagination while rows
are being added, the admin key, and bad parameters as 400s naming the parameter."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from engine_support import base_config

from bench.fake_upstream import FakeUpstream, Reply
from engine.ledger import UsageRecord

ADMIN = "admin-secret-h"
AUTH = {"authorization": f"Bearer {ADMIN}"}
TENANTS = {"t1": {"keys": [{"name": "k1", "key": "sk-t1"}]}, "t2": {"keys": [{"name": "k2", "key": "sk-t2"}]}}


@pytest.fixture
def live(serve, upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    return serve(base_config(tmp_path, upstream, tenants=TENANTS))


def _get(h: httpx.Client, **params: object) -> httpx.Response:
    return h.get("/admin/requests", params={k: str(v) for k, v in params.items()}, headers=AUTH)


def test_rows_with_routing_and_every_filter(live, upstream: FakeUpstream) -> None:
    server, _ = live
    t1 = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-t1", max_retries=0)
    t2 = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-t2", max_retries=0)
    for q in ("what is a cache?", "what is a router?", "what is a cache?"):
        t1.chat.completions.create(model="auto", messages=[{"role": "user", "content": q}])
    t2.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there?"}])
    upstream.script(Reply(status=400, error={"message": "bad thing", "type": "invalid_request_error"}))
    with pytest.raises(openai.BadRequestError):
        t2.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "refused?"}])
    with httpx.Client(base_url=server.url, timeout=30) as h:
        rows = _get(h).json()["data"]
        assert len(rows) == 5
        assert [r["ts"] for r in rows] == sorted((r["ts"] for r in rows), reverse=True)  # newest first
        miss = next(r for r in rows if r["tenant"] == "t1" and r["cache"] == "miss")
        routing = miss["routing"]
        assert routing["chosen"] == routing["candidates"][0][0] and routing["policy"] and routing["task"]
        deployment, quality, cost = routing["candidates"][0]
        assert miss["model"] in deployment and 0 < quality <= 1 and cost > 0
        assert isinstance(routing.get("dropped", []), list)
        assert miss["stages"]["route"] >= 0 and miss["stream"] is False and "prompt" not in miss
        exact = next(r for r in rows if r["cache"] == "exact")
        assert exact["routing"] is None and exact["tenant"] == "t1"

        assert {r["tenant"] for r in _get(h, tenant="t1").json()["data"]} == {"t1"}
        assert len(_get(h, tenant="t1").json()["data"]) == 3
        assert len(_get(h, key="k2").json()["data"]) == 2
        assert len(_get(h, cache="exact").json()["data"]) == 1
        assert len(_get(h, cache="miss", tenant="t1").json()["data"]) == 2
        pinned = _get(h, model="gpt-4o-mini").json()["data"]
        assert [(r["tenant"], r["model"], r["status"]) for r in pinned] == [("t2", "gpt-4o-mini", 200)]
        failed = _get(h, status=400).json()["data"]
        assert len(failed) == 1 and failed[0]["tenant"] == "t2" and failed[0]["error_class"]
        assert _get(h, status=200, tenant="t2").json()["data"][0]["status"] == 200
        newest = rows[0]["ts"]
        assert [r["ts"] for r in _get(h, since=newest).json()["data"]] == [newest]
        assert len(_get(h, until=newest).json()["data"]) == 4
        assert _get(h, since="1h", tenant="nobody").json() == {"data": [], "next_cursor": None}


def test_pages_have_no_gap_and_no_duplicate_while_rows_are_added(live) -> None:
    server, engine = live
    base = time.time() - 1000
    before = [f"old{i:03d}" for i in range(60)]
    for i, rid in enumerate(before):  # pairs of rows share a ts: the cursor's tie-break is the id
        engine.ledger.record(UsageRecord(request_id=rid, ts=base + i // 2, tenant="t1", cache="miss", status=200))
    engine.ledger.flush()
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            # new rows, and rows committed late with an old ts (another worker's journal replayed)
            engine.ledger.record(UsageRecord(request_id=f"new{n:05d}", ts=time.time(), tenant="t1",
                                             cache="miss", status=200))
            engine.ledger.record(UsageRecord(request_id=f"late{n:05d}", ts=base + (n % 30) + 0.5, tenant="t1",
                                             cache="miss", status=200))
            n += 1
            time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[str] = []
    pages = 0
    try:
        with httpx.Client(base_url=server.url, timeout=30) as h:
            cursor = None
            while True:
                params = {"limit": 7, "tenant": "t1", **({"cursor": cursor} if cursor else {})}
                body = _get(h, **params).json()
                seen += [r["request_id"] for r in body["data"]]
                pages += 1
                cursor = body["next_cursor"]
                if cursor is None:
                    break
    finally:
        stop.set()
        thread.join()
    assert pages > 9
    assert len(seen) == len(set(seen))  # no duplicate
    assert set(before) <= set(seen)  # no gap: every row there before the first page is on some page


def test_admin_key_required(live) -> None:
    server, _ = live
    with httpx.Client(base_url=server.url) as h:
        assert h.get("/admin/requests").status_code == 401
        assert h.get("/admin/requests", headers={"authorization": "Bearer nope"}).status_code == 401
        assert h.get("/admin/requests", headers={"authorization": "Bearer sk-t1"}).status_code == 401


@pytest.mark.parametrize(("query", "param"), [
    ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"), ("status=abc", "status"),
    ("status=99", "status"), ("cache=maybe", "cache"), ("cursor=not-a-cursor", "cursor"),
    ("cursor=WzEsMl0", "cursor"), ("since=yesterday", "since"), ("until=nan", "until"), ("tenantt=t1", "tenantt"),
])
def test_bad_parameters_are_400s_naming_them(live, query: str, param: str) -> None:
    server, _ = live
    with httpx.Client(base_url=server.url) as h:
        r = h.get(f"/admin/requests?{query}", headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and param in r.json()["error"]["message"]


def test_limit_bounds_a_page(live) -> None:
    server, engine = live
    for i in range(1005):
        engine.ledger.record(UsageRecord(request_id=f"r{i}", ts=1_700_000_000 + i, tenant="t2", cache="hit", status=200))
    with httpx.Client(base_url=server.url, timeout=30) as h:
        first = _get(h, limit=1000).json()
        assert len(first["data"]) == 1000 and first["next_cursor"]
        rest = _get(h, limit=1000, cursor=first["next_cursor"]).json()
        assert len(rest["data"]) == 5 and rest["next_cursor"] is None
        assert len(_get(h).json()["data"]) == 100  # the default


def test_prompt_and_answer_only_with_content_logging(serve, upstream: FakeUpstream, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    server, _ = serve(base_config(tmp_path, upstream, log_content=True))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "say hi?"}])
    with httpx.Client(base_url=server.url) as h:
        (row,) = _get(h).json()["data"]
    assert row["prompt"] == "say hi?" and row["answer"] == answer.choices[0].message.content
