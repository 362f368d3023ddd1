"""An experiment under `thrifty serve --workers 2` (real processes): a user keeps one arm whichever worker
serves it, and a promotion made through one worker reaches the other within a second (the state file)."""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from engine_support import base_config
from served import Served

from bench.fake_upstream import FakeUpstream
from engine.ledger import Ledger

ADMIN = "admin-secret-experiment-workers"


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_workers_agree_on_arms_and_see_a_promotion(upstream: FakeUpstream, tmp_path: Path) -> None:
    exp = {"name": "w", "control": "a", "stickiness": "user",
           "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "model": "gpt-4o"}]}
    cfg = base_config(tmp_path, upstream, experiments=[exp], cache={"encoder": "hashing", "mode": "off"},
                      server={"access_log": "off"})
    served = Served(cfg, tmp_path, workers=2, env={"THRIFTY_ADMIN_KEY": ADMIN})
    url = served.url

    def ask(user: str) -> httpx.Response:
        # a new connection each time, several at once, so that both workers accept some
        return httpx.post(f"{url}/v1/chat/completions", headers={"connection": "close"}, timeout=30,
                          json={"model": "gpt-4o-mini", "user": user, "messages": [{"role": "user", "content": "hi"}]})

    with served:
        users = [f"user-{i % 40}" for i in range(160)]
        with ThreadPoolExecutor(8) as pool:
            before = list(pool.map(ask, users))
        assert all(r.status_code == 200 for r in before)
        r = httpx.post(url + "/admin/experiments/w/promote", json={"arm": "b"}, timeout=30,
                       headers={"authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text
        time.sleep(1.2)  # each worker re-reads the state file at most once a second
        with ThreadPoolExecutor(8) as pool:
            after = list(pool.map(ask, users[:40]))
        assert all(r.status_code == 200 and r.headers["x-thrifty-model"] == "gpt-4o" for r in after)
    ledger = Ledger(Path(cfg["data_dir"]) / "ledger.sqlite3")
    ids = {r.headers["x-thrifty-request-id"]: u for r, u in zip(before, users, strict=True)}
    rows = ledger.query("SELECT request_id, worker, arm FROM requests WHERE experiment = 'w'")
    ledger.close()
    arms: dict[str, set[str]] = defaultdict(set)
    workers: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row["request_id"] in ids:
            arms[ids[row["request_id"]]].add(row["arm"])
            workers[ids[row["request_id"]]].add(row["worker"])
    assert len({w for ws in workers.values() for w in ws}) == 2  # both workers served
    assert sum(len(ws) == 2 for ws in workers.values()) >= 10  # many users were served by both
    assert all(len(a) == 1 for a in arms.values()) and {a for s in arms.values() for a in s} == {"a", "b"}
    print(f"two workers: {sum(len(ws) == 2 for ws in workers.values())} of 40 users served by both, each on one arm; "
          f"after a promotion through one worker, 40/40 requests on the winner")
