"""SIGKILL under load, again and again: ``thrifty serve`` is killed (the whole process group, no warning)
while clients stream and post requests that miss, hit and write the cache, then restarted on the same data
directory. After every kill: SQLite's integrity_check is ok; after the loop: the LMDB cache opens, every
stored entry decodes, a restarted server serves every cached prompt correctly, and every request whose
response a client received has its ledger row (README, "Usage ledger": a killed process loses none).

Before issue 11 the ledger lived only in memory until the writer's next batch: up to 11 completed requests
were lost per kill. Now each row is appended to the process's journal before the response is sent, and a
restarted ledger replays the journals of dead processes.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from security_support import KEYS, PROVIDER_KEY, gateway_config
from served import Served

from bench.fake_upstream import FakeUpstream
from engine import config as config_mod
from engine.ledger import Ledger
from engine.wiring import build_components
from router.types import ChatResponse

PROMPTS = [f"Crash-test question {i}: what is {i} times seven?" for i in range(40)]
KILLS = int(os.environ.get("THRIFTY_CRASH_KILLS", "3"))


class Load:
    """Clients posting and streaming until stopped; what each one received, by the server's request id."""

    def __init__(self, url: str, clients: int = 6) -> None:
        self.url, self.stop = url, threading.Event()
        self.received: dict[str, str] = {}  # x-thrifty-request-id -> the answer text
        self.bad: list[str] = []  # a 5xx, or an answer that is not the upstream's
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self, i: int) -> None:
        headers = {"authorization": f"Bearer {KEYS['acme']}"}
        with httpx.Client(base_url=self.url, timeout=10, headers=headers) as client:
            for n in itertools.count(i * 7):
                if self.stop.is_set():
                    return
                stream = n % 3 == 0
                body = {"model": "gpt-4o-mini", "stream": stream,
                        "messages": [{"role": "user", "content": PROMPTS[n % len(PROMPTS)]}]}
                try:
                    r = client.post("/v1/chat/completions", json=body)
                except httpx.TransportError:
                    return  # the server is gone
                self._note(r, stream)

    def _note(self, r: httpx.Response, stream: bool) -> None:
        if r.status_code >= 500:
            self.bad.append(f"{r.status_code} {r.text[:200]}")
            return
        if stream:
            if "data: [DONE]" not in r.text:
                return  # cut by the kill: not a completed request
            text = "".join(msgspec.json.decode(line[6:])["choices"][0]["delta"].get("content") or ""
                           for line in r.text.splitlines()
                           if line.startswith("data: {") and msgspec.json.decode(line[6:]).get("choices"))
        else:
            text = r.json()["choices"][0]["message"]["content"]
        with self._lock:
            self.received[r.headers["x-thrifty-request-id"]] = text

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def _ledger_ids(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT request_id FROM requests")}
    finally:
        conn.close()


def _kill_loop(upstream: FakeUpstream, tmp_path: Path, kills: int) -> dict[str, Any]:
    data = tmp_path / "data"
    cfg = gateway_config(data, upstream.url)
    ledger_path = data / "ledger.sqlite3"
    runs: list[dict[str, Any]] = []
    for k in range(kills):
        server = Served(cfg, tmp_path, name=f"run{k}")
        server.wait_ready()
        load = Load(server.url)
        target = 20 + (k * 13) % 40  # kill at a different point of the load each time
        deadline = time.monotonic() + 30
        while load.count() < target and time.monotonic() < deadline:
            time.sleep(0.005)
        server.kill()
        load.join()
        in_sqlite = _ledger_ids(ledger_path)  # before any replay: what the writer had committed
        runs.append({"received": dict(load.received), "bad": list(load.bad),
                     "unjournaled_loss": len(set(load.received) - in_sqlite),
                     "integrity": _integrity(ledger_path)})
    ledger = Ledger(ledger_path)  # opening it replays the journal of the last killed process
    final_ids = {r["request_id"] for r in ledger.query("SELECT request_id FROM requests")}
    ledger.close()
    for run in runs:
        run["lost"] = len(set(run["received"]) - final_ids)
    return {"runs": runs, "cfg": cfg, "data": data}


def _check_cache(cfg: dict[str, Any], tmp_path: Path, upstream: FakeUpstream) -> int:
    """Every stored entry decodes; a restarted server serves each cached prompt with the upstream's answer."""
    settings = config_mod.load(cfg)
    cache = build_components(settings).open_cache()
    decode = msgspec.json.Decoder(ChatResponse).decode
    entries = 0
    for _, entry in cache.store.iter_entries():
        response = decode(entry.response)
        assert response.choices[0].message.content == upstream.answer
        entries += 1
    cache.close()
    server = Served(cfg, tmp_path, name="after")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=10,
                          headers={"authorization": f"Bearer {KEYS['acme']}"}) as client:
            for prompt in PROMPTS:
                r = client.post("/v1/chat/completions", json={
                    "model": "gpt-4o-mini", "messages": [{"role": "user", "content": prompt}]})
                assert r.status_code == 200, r.text[:300]
                assert r.json()["choices"][0]["message"]["content"] == upstream.answer
    finally:
        server.stop()
    return entries


def _run(upstream: FakeUpstream, tmp_path: Path, kills: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_TEST_PROVIDER_KEY", PROVIDER_KEY)
    out = _kill_loop(upstream, tmp_path, kills)
    runs = out["runs"]
    assert all(run["integrity"] == "ok" for run in runs), [run["integrity"] for run in runs]
    assert [run["bad"] for run in runs] == [[]] * kills
    assert all(upstream.answer == text for run in runs for text in run["received"].values())
    # README: a killed process loses no completed request's row (the journal is in the page cache).
    assert [run["lost"] for run in runs] == [0] * kills
    entries = _check_cache(out["cfg"], tmp_path, upstream)
    received = sum(len(run["received"]) for run in runs)
    print(f"\nSIGKILL x{kills}: {received} completed requests received, ledger rows lost per kill "
          f"{[run['lost'] for run in runs]} (without the journal's replay: "
          f"{[run['unjournaled_loss'] for run in runs]}); integrity_check ok after every kill; "
          f"{entries} cache entries, all decode; all {len(PROMPTS)} prompts served correctly after the last kill")


@pytest.mark.timeout(300)
def test_sigkill_under_load_loses_no_row_and_corrupts_nothing(upstream: FakeUpstream, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _run(upstream, tmp_path, KILLS, monkeypatch)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_thirty_sigkills_under_load(upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(upstream, tmp_path, 30, monkeypatch)
