"""engine.experiments without HTTP: deterministic assignment (across instances, i.e. workers and restarts),
stickiness values, targets, config errors that name the key, state shared through the data directory,
weights, and the guard rail's window."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine.config import load
from engine.errors import ConfigError, RequestError
from engine.experiments import ExperimentConfig, ExperimentSet, Guard, _verdict, _Window, bucket, sticky_value
from router.types import ChatRequest, ThriftyOptions

EXP = {"name": "ab", "control": "a", "arms": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10, "model": "gpt-4o"}]}


def _cfg(**over: Any) -> ExperimentConfig:
    return msgspec.convert({**EXP, **over}, ExperimentConfig)


def _req(user: str | None = None, **kw: Any) -> ChatRequest:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": kw.pop("text", "hello")}], **kw}
    if user is not None:
        body["user"] = user
    return msgspec.convert(body, ChatRequest)


def test_assignment_is_deterministic_across_instances_and_near_the_weights(tmp_path: Path) -> None:
    one = ExperimentSet([_cfg()], tmp_path / "w1")
    two = ExperimentSet([_cfg()], tmp_path / "w2")  # another worker, or a restart: no shared memory
    opts = ThriftyOptions()
    arms = [one.assign(_req(f"user-{i}"), "acme", None, opts) for i in range(20_000)]
    again = [two.assign(_req(f"user-{i}"), "acme", None, opts) for i in range(20_000)]
    assert [a.arm.name for a in arms if a] == [a.arm.name for a in again if a]
    share_b = Counter(a.arm.name for a in arms if a)["b"] / 20_000
    assert abs(share_b - 0.10) < 4 * (0.09 / 20_000) ** 0.5
    # The same user id in another tenant is another person: its own draw.
    assert bucket(b"ab", "acme", "u:x") != bucket(b"ab", "globex", "u:x")
    # A model arm changes what answers: its own cache partition; control shares the default one.
    b = next(a for a in arms if a and a.arm.name == "b")
    assert b.variant == "ab/b" and next(a for a in arms if a and a.arm.name == "a").variant is None


def test_stickiness_values() -> None:
    user, tenant, conv = _cfg(), _cfg(stickiness="tenant"), _cfg(stickiness="conversation")
    assert sticky_value(user, _req("u1"), "t") == "u:u1"
    assert sticky_value(user, _req(safety_identifier="s1"), "t") == "u:s1"
    # No user id: the conversation (its first user message), so one conversation still keeps one arm.
    follow_up = msgspec.convert({"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
                                              {"role": "user", "content": "more"}]}, ChatRequest)
    assert sticky_value(user, _req(), "t") == sticky_value(user, follow_up, "t") == "f:hello"
    assert sticky_value(tenant, _req("u1"), "acme") == "t:acme"
    assert sticky_value(conv, _req("u1", metadata={"conversation_id": "c9"}), "t") == "c:c9"


def test_targets(tmp_path: Path) -> None:
    cfg = _cfg(target={"tenants": ["acme"], "keys": ["k1"], "namespaces": ["faq"], "tasks": ["code"]})
    s = ExperimentSet([cfg], tmp_path)
    ok = ThriftyOptions(namespace="faq", task="code")
    assert s.assign(_req("u"), "acme", "k1", ok) is not None
    assert s.assign(_req("u"), "globex", "k1", ok) is None
    assert s.assign(_req("u"), "acme", "k2", ok) is None
    assert s.assign(_req("u"), "acme", "k1", ThriftyOptions(namespace="docs", task="code")) is None
    assert s.assign(_req("u"), "acme", "k1", ThriftyOptions(namespace="faq")) is None


@pytest.mark.parametrize(("exp", "needle"), [
    ({**EXP, "control": "zz"}, "control 'zz' is not one of the arms"),
    ({**EXP, "arms": [{"name": "a", "weight": 1}]}, "between 2 and 8 arms"),
    ({**EXP, "arms": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]}, "duplicate arm names"),
    ({**EXP, "arms": [{"name": "a", "weight": 0}, {"name": "b", "weight": 0}]}, "weights sum to 0"),
    ({**EXP, "name": "has space"}, "experiment name 'has space'"),
    ({**EXP, "stickiness": "ip"}, "stickiness"),
    ({**EXP, "guard": {"max_error_rate": 2}}, "max_error_rate"),
    ({**EXP, "arms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "modle": "x"}]}, "modle"),
    ({**EXP, "arms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "model": "no-such"}]}, "unknown model 'no-such'"),
    ({**EXP, "arms": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "route": "nowhere"}]}, "route 'nowhere'"),
    ({**EXP, "judge": {"model": "no-judge"}}, "judge: unknown model 'no-judge'"),
    ({**EXP, "judge": {"model": "gpt-4o", "sample": 0}}, "judge.sample"),
])
def test_config_errors_name_the_key(tmp_path: Path, exp: dict[str, Any], needle: str) -> None:
    from engine import Engine

    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        Engine(load({"data_dir": str(tmp_path), "cache": {"encoder": "hashing"}, "experiments": [exp]}))


def test_duplicate_experiment_names(tmp_path: Path) -> None:
    from engine import Engine

    with pytest.raises(ConfigError, match="duplicate experiment names"):
        Engine(load({"data_dir": str(tmp_path), "cache": {"encoder": "hashing"}, "experiments": [EXP, EXP]}))


def test_state_is_shared_through_the_data_dir_and_survives_restarts(tmp_path: Path) -> None:
    w1 = ExperimentSet([_cfg()], tmp_path)
    w2 = ExperimentSet([_cfg()], tmp_path)
    users = [_req(f"u{i}") for i in range(400)]
    in_b = [u for u in users if (a := w2.assign(u, "t", None, ThriftyOptions())) and a.arm.name == "b"]
    assert in_b
    w1.stop("ab", arm="b")
    w2.refresh()  # what the request path does at most once a second
    assert all(w2.assign(u, "t", None, ThriftyOptions()).arm.name == "a" for u in in_b)  # type: ignore[union-attr]
    assert w2.weights("ab") == {"a": 1.0, "b": 0.0}
    w1.resume("ab")
    w1.set_weights("ab", {"a": 50, "b": 50})
    restarted = ExperimentSet([_cfg()], tmp_path)
    assert restarted.weights("ab") == pytest.approx({"a": 0.5, "b": 0.5})
    with pytest.raises(RequestError, match="the control arm cannot be stopped"):
        restarted.stop("ab", arm="a")
    with pytest.raises(RequestError, match="weight of arm b"):
        restarted.set_weights("ab", {"b": -1})
    restarted.promote("ab", "b")
    assert ExperimentSet([_cfg()], tmp_path).weights("ab") == {"a": 0.0, "b": 1.0}


def test_guard_window() -> None:
    guard = Guard(max_error_rate=0.5, max_p99_ms=1000, window_s=10, min_requests=4)
    w = _Window()
    for t in range(3):
        w.add(float(t), True, 10.0, guard.window_s)
        assert _verdict(w, guard) is None  # fewer than min_requests: not judged
    w = _Window()
    for t in range(10):
        w.add(float(t), False, 10.0, guard.window_s)
    for t in range(10, 16):
        w.add(float(t), True, 10.0, guard.window_s)
        verdict = _verdict(w, guard)
    assert verdict is not None and verdict[0].startswith("error rate")
    slow = _Window()
    for t in range(8):
        slow.add(float(t), False, 5000.0, guard.window_s)
    assert (v := _verdict(slow, guard)) is not None and v[0].startswith("p99 latency")
    old = _Window()
    for t in range(10):
        old.add(float(t), True, 10.0, guard.window_s)
    old.add(100.0, False, 10.0, guard.window_s)  # the failures have left the window
    assert len(old.items) == 1 and old.errors == 0


def test_cli_report_list_json_and_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import random

    from engine.cli import main
    from engine.ledger import Ledger, UsageRecord

    data = tmp_path / "data"
    led = Ledger(data / "ledger.sqlite3")
    rng = random.Random(2)
    for i in range(400):
        arm = "b" if i % 10 == 0 else "a"
        cost = rng.uniform(1, 3) * (0.8 if arm == "b" else 1.0) * 1e-4
        led.record(UsageRecord(request_id=f"r{i}", ts=1_700_000_000 + i, tenant="t", cache="miss", status=200,
                               cost_usd=cost, latency_ms=30, overhead_ms=1, experiment="ab", arm=arm))
    led.record(UsageRecord(request_id="other", ts=1_700_000_000, tenant="t", cache="miss", status=200, cost_usd=1.0))
    led.close()
    cfg = tmp_path / "t.yaml"
    cfg.write_text(json.dumps({"data_dir": str(data), "cache": {"encoder": "hashing"}, "experiments": [EXP]}))
    assert main(["experiment", "list", "--config", str(cfg)]) == 0
    assert "ab  (config)  running  a 90%, b 10%" in capsys.readouterr().out
    assert main(["experiment", "report", "ab", "--config", str(cfg), "--png", str(tmp_path / "r.png")]) == 0
    out = capsys.readouterr().out
    assert "experiment ab: 400 requests, control a" in out and "cost_usd" in out
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["experiment", "report", "ab", "--json", "--config", str(cfg)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["arms"]["a"]["requests"] == 360 and rep["arms"]["b"]["requests"] == 40
    assert rep["arms"]["b"]["split_ok"] is True
    assert rep["vs_control"]["b"]["cost_usd"]["rel_ci"]["lo"] < -0.2 + 0.15  # ~ -20 %, 40 requests
    assert main(["experiment", "report", "nope", "--config", str(cfg)]) == 1
    assert "no experiment named 'nope'" in capsys.readouterr().err
