"""The config overlay (engine/overlay.py): run-time changes validated with the config file's messages,
applied live, persisted to <data_dir>/overlay.yaml, merged over the config at start-up, and audited."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from engine_support import base_config
from live_server import LiveServer

from bench.fake_upstream import FakeUpstream
from engine import Engine
from engine import config as config_mod
from engine.errors import ConfigError, RequestError
from engine.overlay import FILENAME

ADMIN = "admin-secret-overlay"
AUTH = {"authorization": f"Bearer {ADMIN}"}
TENANTS = {"acme": {"keys": [{"name": "acme-1", "key": "sk-acme"}]}}


def _config(tmp_path: Path, upstream: FakeUpstream) -> dict[str, Any]:
    return base_config(tmp_path, upstream, tenants=TENANTS, cache={"encoder": "hashing"},
                       server={"access_log": "off"})


def _ask(h: httpx.Client, prompt: str, model: str = "auto") -> httpx.Response:
    return h.post("/v1/chat/completions", headers={"authorization": "Bearer sk-acme"},
                  json={"model": model, "messages": [{"role": "user", "content": prompt}]})


def _stop(live: LiveServer) -> None:
    live.stop()
    assert live.engine is not None
    live.engine.ledger.close()
    live.engine.audit.close()


@pytest.mark.parametrize(("patch", "needle"), [
    ({"cache": {"threshold": 2}}, "threshold must be between 0 and 1"),
    ({"cache": {"ttl_s": -5}}, "ttl_s must be a finite number of seconds"),
    ({"cache": {"mode": "sometimes"}}, "$.cache.mode"),
    ({"routing": {"policy": "cheapest"}}, "$.routing.policy"),
    ({"routing": {"quality_target": "high"}}, "$.routing.quality_target"),
    ({"routing": {"rules": [{"only": ["no-such-model"]}]}}, "no-such-model"),
    ({"routing": {"rules": [{"when": "always"}]}}, "when"),
    ({"tenants": {"acme": {"budget": {"daily_usd": {"hard": "lots"}}}}}, "$.tenants.acme.budget.daily_usd.hard"),
    ({"tenants": {"acme": {"budget": {"on_hard": "panic"}}}}, "$.tenants.acme.budget.on_hard"),
    ({"tenants": {"nobody": {"budget": None}}}, "tenants.nobody: no such tenant"),
    ({"keys": {"ghost": {"budget": None}}}, "keys.ghost: no virtual key of that name"),
    ({"cache": {"encoder": "hashing"}}, "`cache.encoder` is not a controllable setting"),
    ({"server": {"port": 1}}, "`server` is not a controllable setting"),
    ({"tenants": {"acme": {"keys": []}}}, "`tenants.acme.keys` is not a controllable setting"),
    (["cache"], "the top level must be a mapping"),
])
def test_a_bad_change_is_refused_naming_the_setting_and_changes_nothing(
        tmp_path: Path, upstream: FakeUpstream, patch: Any, needle: str) -> None:
    engine = Engine.from_config(_config(tmp_path, upstream))
    try:
        before = engine.settings
        with pytest.raises(RequestError) as err:
            engine.overlay.apply(patch, "admin-key")
        assert needle in str(err.value), str(err.value)
        assert err.value.status == 400
        assert engine.settings is before
        assert not (engine.settings.data_dir / FILENAME).exists()
        assert engine.audit.recent() == []
    finally:
        engine.ledger.close()
        engine.audit.close()


def test_the_same_message_as_the_config_file(tmp_path: Path, upstream: FakeUpstream) -> None:
    cfg = _config(tmp_path, upstream)
    with pytest.raises(ConfigError) as from_file:
        config_mod.load({**cfg, "cache": {"encoder": "hashing", "threshold": 1.5}})
    engine = Engine.from_config(cfg)
    try:
        with pytest.raises(RequestError) as from_api:
            engine.overlay.apply({"cache": {"threshold": 1.5}}, "admin-key")
    finally:
        engine.ledger.close()
        engine.audit.close()
    # "config dict: <msgspec's message>" vs "controls: <the same message>"
    assert str(from_file.value).split(": ", 1)[1] == str(from_api.value).split(": ", 1)[1]


def test_the_overlay_file_is_merged_at_start_up_and_a_bad_one_is_named(tmp_path: Path, upstream: FakeUpstream) -> None:
    cfg = _config(tmp_path, upstream)
    data = Path(cfg["data_dir"])
    data.mkdir(parents=True)
    (data / FILENAME).write_text("cache:\n  mode: 'off'\n  ttl_s: 60\nkeys:\n  acme-1:\n    budget:\n"
                                 "      daily_usd: {hard: 1.5}\n")
    settings = config_mod.load(cfg)
    assert settings.raw.cache.mode == "off" and settings.raw.cache.ttl_s == 60
    assert settings.raw.cache.encoder == "hashing"  # the config file's settings stay under the overlay
    assert settings.budgets["key:acme-1"].daily_usd is not None
    assert settings.budgets["key:acme-1"].daily_usd.hard == 1.5
    assert any("overlay" in n for n in settings.notes)
    (data / FILENAME).write_text("cache:\n  bogus: 1\n")
    with pytest.raises(ConfigError) as err:
        config_mod.load(cfg)
    assert str(data / FILENAME) in str(err.value) and "`cache.bogus`" in str(err.value)
    (data / FILENAME).write_text("routing:\n  quality_target: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config_mod.load(cfg)


def test_changes_apply_live_persist_across_a_restart_and_are_audited(
        tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    cfg = _config(tmp_path, upstream)
    live = LiveServer.of(Engine.from_config(cfg))
    try:
        with httpx.Client(base_url=live.url) as h:
            assert h.patch("/admin/controls", json={"cache": {"mode": "off"}}).status_code == 401
            assert _ask(h, "Same question twice?").headers["x-thrifty-cache"] == "miss"
            assert _ask(h, "Same question twice?").headers["x-thrifty-cache"] == "exact"
            r = h.patch("/admin/controls", headers=AUTH, json={
                "cache": {"mode": "off"}, "routing": {"policy": "cost", "quality_target": 0.5}})
            assert r.status_code == 200, r.text
            assert sorted(r.json()["changed"]) == ["cache.mode", "routing.policy", "routing.quality_target"]
            assert _ask(h, "Same question twice?").headers["x-thrifty-cache"] == "bypass"
            # The rules route goes through the overlay too.
            rules = [{"name": "mini-only", "only": ["gpt-4o-mini"]}]
            assert h.put("/admin/routing/rules", headers=AUTH, json=rules).status_code == 200
            assert _ask(h, "Which model answers this?").headers["x-thrifty-model"] == "gpt-4o-mini"
            r = h.patch("/admin/controls", headers=AUTH, json={"tenants": {"acme": {"budget": {"daily_usd": {"hard": 1e-9}}}}})
            assert r.status_code == 200, r.text
            over = _ask(h, "One more question?")
            assert over.status_code == 429 and over.json()["error"]["type"] == "budget_exceeded"
            # An unchanged value is not a change: nothing audited for it.
            assert h.patch("/admin/controls", headers=AUTH, json={"cache": {"mode": "off"}}).json()["changed"] == []
    finally:
        _stop(live)
    live = LiveServer.of(Engine.from_config(cfg))
    try:
        engine = live.engine
        assert engine is not None
        raw = engine.settings.raw
        assert raw.cache.mode == "off" and raw.routing.policy == "cost" and raw.routing.quality_target == 0.5
        assert [r.name for r in engine.routing_rules()] == ["mini-only"]
        with httpx.Client(base_url=live.url) as h:
            assert _ask(h, "One more question?").status_code == 429  # the budget survived the restart
            got = h.get("/admin/controls", headers=AUTH).json()
            assert got["settings"]["cache"]["mode"] == "off" and got["overlay"]["cache"] == {"mode": "off"}
            events = h.get("/admin/audit", headers=AUTH).json()["data"]
        by_target = {e["target"]: e for e in events}
        assert set(by_target) == {"cache.mode", "routing.policy", "routing.quality_target", "routing.rules",
                                  "tenants.acme.budget"}
        assert (by_target["cache.mode"]["old"], by_target["cache.mode"]["new"]) == ("on", "off")
        assert by_target["routing.rules"]["old"] == [] and by_target["routing.rules"]["new"][0]["name"] == "mini-only"
        assert by_target["tenants.acme.budget"]["old"] is None
        assert by_target["tenants.acme.budget"]["new"]["daily_usd"]["hard"] == 1e-9
        assert {e["actor"] for e in events} == {"admin-key"} and {e["action"] for e in events} == {"config.set"}
    finally:
        _stop(live)


def test_threshold_change_reaches_the_running_cache(tmp_path: Path, upstream: FakeUpstream) -> None:
    engine = Engine.from_config(_config(tmp_path, upstream))
    try:
        policy = engine.cache.policy
        engine.overlay.apply({"cache": {"threshold": 0.99}}, "admin-key")
        assert engine.cache.policy is not policy and engine.cache.policy.threshold == 0.99
        engine.overlay.apply({"cache": {"ttl_s": 120}}, "admin-key")  # TTL: read per request, policy kept
        assert engine.settings.raw.cache.ttl_s == 120 and engine.cache.policy.threshold == 0.99
    finally:
        engine.close()


def test_another_worker_picks_up_a_change(tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two engines on one data dir stand for two worker processes: a change made through one reaches the
    other, serving, within its watch interval, and a hand-broken file is logged and leaves it running."""
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    cfg = _config(tmp_path, upstream)
    writer = Engine.from_config(cfg)
    live = LiveServer.of(Engine.from_config(cfg))
    try:
        reader = live.engine
        assert reader is not None and reader.overlay.refresh() is False  # nothing new yet
        writer.overlay.apply({"cache": {"mode": "off"}, "routing": {"rules": [{"only": ["gpt-4o-mini"]}]}},
                             "admin-key")
        deadline = time.monotonic() + 10
        while reader.settings.raw.cache.mode != "off" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.settings.raw.cache.mode == "off"
        with httpx.Client(base_url=live.url) as h:
            r = _ask(h, "Which model now?")
            assert r.headers["x-thrifty-cache"] == "bypass" and r.headers["x-thrifty-model"] == "gpt-4o-mini"
        (reader.settings.data_dir / FILENAME).write_text("cache:\n  mode: sometimes\n")
        with pytest.raises(ConfigError, match=r"\$\.cache\.mode"):
            reader.overlay.refresh()
        assert reader.settings.raw.cache.mode == "off"
    finally:
        _stop(live)
        writer.ledger.close()
        writer.audit.close()


def test_the_error_bound_merges_into_the_adaptive_settings_and_reaches_the_cache(
        tmp_path: Path, upstream: FakeUpstream) -> None:
    engine = Engine.from_config(_config(tmp_path, upstream))
    try:
        assert engine.cache.gate is None
        with pytest.raises(RequestError, match=r"adaptive\.delta must be in \(0, 0\.5\)"):
            engine.overlay.apply({"cache": {"adaptive": {"delta": 0.7}}}, "admin-key")
        engine.overlay.apply({"cache": {"adaptive": {"enabled": True, "delta": 0.05}}}, "admin-key")
        adaptive = engine.settings.raw.cache.adaptive
        assert adaptive.enabled and adaptive.delta == 0.05 and adaptive.confidence == 0.9  # the rest kept
        assert engine.cache.gate is not None and engine.cache.gate.config.delta == 0.05 and engine.cache.gate_adaptive
        engine.overlay.apply({"cache": {"adaptive": {"delta": 0.01}}}, "admin-key")
        assert engine.settings.raw.cache.adaptive.enabled and engine.cache.gate.config.delta == 0.01
        event = engine.audit.recent(limit=1)[0]
        assert event.target == "cache.adaptive" and event.old["delta"] == 0.05 and event.new["delta"] == 0.01
    finally:
        engine.close()


def test_a_budget_added_at_run_time_counts_the_spend_before_it(
        tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    live = LiveServer.of(Engine.from_config(_config(tmp_path, upstream)))
    try:
        engine = live.engine
        assert engine is not None
        with httpx.Client(base_url=live.url) as h:
            for i in range(3):
                assert _ask(h, f"Spend before the budget {i}", model="gpt-4o").status_code == 200
            engine.ledger.flush()
            before = engine.ledger.spend(tenant="acme")
            assert before > 0
            r = h.patch("/admin/controls", headers=AUTH, json={
                "tenants": {"acme": {"budget": {"daily_usd": {"hard": before * 1.2}}}},
                "keys": {"acme-1": {"budget": {"monthly_usd": {"soft": before / 2}}}}})
            assert r.status_code == 200, r.text
            states = {(s.subject, s.period): s for s in engine.budgets.states()}
            assert states[("tenant:acme", "daily")].spend_usd == pytest.approx(before, rel=1e-9)
            assert states[("key:acme-1", "monthly")].spend_usd == pytest.approx(before, rel=1e-9)
            assert states[("key:acme-1", "monthly")].status == "warn"
            # The morning counted: one more such request (about a third of `before`) reaches the hard limit.
            assert _ask(h, "One more", model="gpt-4o").status_code == 200
            assert _ask(h, "And another", model="gpt-4o").status_code == 429
    finally:
        _stop(live)


def test_allowed_and_denied_models_apply_live(tmp_path: Path, upstream: FakeUpstream) -> None:
    from router.types import ChatRequest, ThriftyOptions

    engine = Engine.from_config(_config(tmp_path, upstream))
    try:
        req = msgspec.convert({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}, ChatRequest)

        def models(tenant: str) -> set[str]:
            decision = engine.rank(req, None, tenant=tenant, options=ThriftyOptions(), policy=None)
            return {c.model.id for c in decision.candidates}

        assert len(models("acme")) > 1
        engine.overlay.apply({"tenants": {"acme": {"allow_models": ["gpt-4o-mini", "gpt-4o"]}}}, "admin-key")
        assert models("acme") == {"gpt-4o-mini", "gpt-4o"}
        engine.overlay.apply({"tenants": {"acme": {"deny_models": ["gpt-4o"]}}}, "admin-key")
        assert models("acme") == {"gpt-4o-mini"}
        assert len(models("default")) > 1  # another tenant is not touched
    finally:
        engine.close()
