"""thrifty whatif on a seeded ledger: each answered request re-priced by hand (catalog price, cached input,
the model's expected output length for the task), hits and failures left at 0, the window and tenant
filters, the command line's output and its caveat, and an unknown model named."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.cli import main
from engine.ledger import Ledger, UsageRecord
from engine.whatif import CAVEAT, expected_output, whatif
from models.catalog import Catalog
from models.errors import UnknownModelError
from router.scoring import DEFAULT_OUTPUT_TOKENS

NOW = time.time()


def _seed(path: Path) -> None:
    led = Ledger(path)
    rows = [
        # request_id, age (s), tenant, cache, status, model, task, prompt, completion, cached, cost
        ("r1", 3600, "acme", "miss", 200, "gpt-4o", "code", 1000, 400, 0, 0.0065),
        ("r2", 7200, "acme", "miss", 200, "gpt-4o", "chat", 2000, 100, 1000, 0.00475),
        ("r3", 60, "globex", "bypass", 200, "gpt-4o-mini", None, 500, 50, 0, 0.000105),
        ("r4", 120, "acme", "exact", 200, "gpt-4o", "chat", 0, 0, 0, 0.0),  # a hit: 0 in both worlds
        ("r5", 180, "acme", "miss", 502, "gpt-4o", "chat", 0, 0, 0, 0.0),  # failed: left out
        ("r6", 30 * 86400, "acme", "miss", 200, "gpt-4o", "code", 9999, 9999, 0, 1.0),  # outside 7d
    ]
    for rid, age, tenant, cache, status, model, task, p, c, cached, cost in rows:
        led.record(UsageRecord(request_id=rid, ts=NOW - age, tenant=tenant, cache=cache, status=status, model=model,
                               task=task, prompt_tokens=p, completion_tokens=c, cached_tokens=cached, cost_usd=cost))
    led.close()


def test_repriced_by_hand(tmp_path: Path) -> None:
    _seed(tmp_path / "ledger.sqlite3")
    led = Ledger(tmp_path / "ledger.sqlite3")
    cat = Catalog.default()
    w = whatif(led, cat, "gpt-4o-mini", since=NOW - 7 * 86400)
    # gpt-4o-mini: $0.15 in, $0.075 cached in, $0.60 out per 1M; expected output: code 500, chat 300
    e = cat.get("gpt-4o-mini")
    assert expected_output(e, "code") == DEFAULT_OUTPUT_TOKENS["code"] == 500
    r1 = (1000 * 0.15 + 500 * 0.60) / 1e6
    r2 = (1000 * 0.15 + 1000 * 0.075 + 300 * 0.60) / 1e6
    r3 = (500 * 0.15 + 300 * 0.60) / 1e6  # no task logged: "chat"
    assert w.requests == 3 and w.hits == 1 and w.failed == 1
    assert w.whatif_usd == pytest.approx(r1 + r2 + r3, rel=1e-12)
    assert w.actual_usd == pytest.approx(0.0065 + 0.00475 + 0.000105, rel=1e-12)
    same = (1000 * 0.15 + 400 * 0.6 + 1000 * 0.15 + 1000 * 0.075 + 100 * 0.6 + 500 * 0.15 + 50 * 0.6) / 1e6
    assert w.whatif_same_length_usd == pytest.approx(same, rel=1e-12)
    assert [g.key for g in w.by_model] == ["gpt-4o", "gpt-4o-mini"] and w.by_model[0].requests == 2
    assert {g.key for g in w.by_task} == {"code", "chat"}
    acme = whatif(led, cat, "gpt-4o-mini", since=NOW - 7 * 86400, tenant="acme")
    assert acme.requests == 2 and acme.whatif_usd == pytest.approx(r1 + r2, rel=1e-12)
    assert whatif(led, cat, "gpt-4o-mini").requests == 4  # no window: the 30-day-old row too
    with pytest.raises(UnknownModelError, match="no-such-model"):
        whatif(led, cat, "no-such-model")
    led.close()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _seed(data / "ledger.sqlite3")
    cfg = tmp_path / "thrifty.yaml"
    cfg.write_text(f"data_dir: {data}\ncache: {{encoder: hashing}}\n")
    assert main(["whatif", "--config", str(cfg), "--model", "gpt-4o-mini", "--since", "7d"]) == 0
    out = capsys.readouterr().out
    assert "3 answered upstream requests re-priced; 1 cache hits" in out and "1 failed requests left out" in out
    assert "caveat: quality unknown" in " ".join(out.split())
    assert main(["whatif", "--config", str(cfg), "--model", "gpt-4o-mini", "--since", "7d", "--tenant", "globex",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["requests"] == 1 and got["caveat"] == CAVEAT and got["model"] == "gpt-4o-mini"
    assert got["whatif_usd"] == pytest.approx((500 * 0.15 + 300 * 0.6) / 1e6)
    assert main(["whatif", "--config", str(cfg), "--model", "nope"]) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err
