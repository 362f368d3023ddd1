"""Experiments through the live proxy (uvicorn on 127.0.0.1) and the loopback fake upstream: the split and
stickiness, per-arm ledger sums against the responses' costs, a simulated experiment with a known effect,
an A/A run, a guard rail stopping a failing arm, cache partitions per arm, and the admin routes."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_support import base_config
from live_server import LiveServer

from bench.fake_upstream import FakeUpstream, Reply, usage
from engine import Engine
from engine import _experiment_report as report_mod

ADMIN = "admin-secret-experiments"
AUTH = {"authorization": f"Bearer {ADMIN}"}
# Two models of our own, priced so that B costs exactly 80 % of A for the same tokens.
MODELS = [
    {"id": "exp-a", "vendor": "test", "price": {"input": 1.0, "output": 4.0}, "context_window": 32000,
     "max_output": 4096, "routes": [{"provider": "fake", "model": "exp-a"}]},
    {"id": "exp-b", "vendor": "test", "price": {"input": 0.8, "output": 3.2}, "context_window": 32000,
     "max_output": 4096, "routes": [{"provider": "fake", "model": "exp-b"}]},
    {"id": "exp-judge", "vendor": "test", "price": {"input": 5.0, "output": 15.0}, "context_window": 32000,
     "max_output": 4096, "routes": [{"provider": "fake", "model": "exp-judge"}]},
]


def _config(tmp_path: Path, upstream: FakeUpstream, experiments: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    cfg = base_config(tmp_path, upstream, catalog={"models": MODELS}, experiments=experiments,
                      cache={"encoder": "hashing", "mode": "off"}, **extra)
    cfg["server"] = {"access_log": "off"}
    return cfg


@pytest.fixture
def proxy(upstream: FakeUpstream):  # type: ignore[no-untyped-def]
    started: list[LiveServer] = []

    def start(cfg: dict[str, Any]) -> tuple[LiveServer, Engine]:
        live = LiveServer.of(Engine.from_config(cfg))
        started.append(live)
        return live, live.engine  # type: ignore[return-value]

    yield start
    for live in started:
        live.stop()


def _send(url: str, bodies: list[dict[str, Any]], concurrency: int = 8) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        sem = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            async def one(body: dict[str, Any]) -> httpx.Response:
                async with sem:
                    return await client.post("/v1/chat/completions", json=body)

            return list(await asyncio.gather(*(one(b) for b in bodies)))

    return asyncio.run(run())


def _rows(engine: Engine, name: str) -> dict[str, dict[str, Any]]:
    engine.ledger.flush()
    return {r["request_id"]: r for r in engine.ledger.query(
        "SELECT request_id, arm, model, cost_usd, status FROM requests WHERE experiment = ?", (name,))}


def _split_run(url: str, engine: Engine, n: int, users: int) -> dict[str, Any]:
    """n requests from `users` users (each user several times, in shuffled order): the split, stickiness,
    and per-arm sums of the ledger against the responses' x-thrifty-cost-usd."""
    order = [i % users for i in range(n)]
    random.Random(5).shuffle(order)
    bodies = [{"model": "exp-a", "user": f"user-{u}", "max_tokens": 16,
               "messages": [{"role": "user", "content": f"q{u}"}]} for u in order]
    responses = _send(url, bodies)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200][:3]
    rows = _rows(engine, "split")
    arm_of_user: dict[int, set[str]] = defaultdict(set)
    header_sum: Counter[str] = Counter()
    for u, r in zip(order, responses, strict=True):
        row = rows[r.headers["x-thrifty-request-id"]]
        arm_of_user[u].add(row["arm"])
        assert r.headers["x-thrifty-model"] == ("exp-b" if row["arm"] == "b" else "exp-a")
        assert r.headers["x-thrifty-cost-usd"] == f"{row['cost_usd']:.8f}"  # each row is its response's cost
        header_sum[row["arm"]] += float(r.headers["x-thrifty-cost-usd"])
    ledger_sum = {a["arm"]: a["s"] for a in engine.ledger.query(
        "SELECT arm, SUM(cost_usd) AS s FROM requests WHERE experiment = 'split' GROUP BY arm")}
    counts = Counter(row["arm"] for row in rows.values())
    return {"counts": counts, "sticky": all(len(s) == 1 for s in arm_of_user.values()),
            "header_sum": header_sum, "ledger_sum": ledger_sum, "rows": len(rows)}


SPLIT = [{"name": "split", "control": "a", "stickiness": "user",
          "arms": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10, "model": "exp-b"}]}]


def _assert_split(out: dict[str, Any], n: int) -> None:
    assert out["rows"] == n
    counts = out["counts"]
    # binomial noise: within 4 standard deviations of 10 % (users, not requests, are randomised: each user
    # sends n/users requests, so the standard deviation is that of the users' split, scaled)
    b = counts["b"] / n
    assert abs(b - 0.10) <= 4 * (0.1 * 0.9 / (n / 5)) ** 0.5, counts
    assert out["sticky"]
    for arm in ("a", "b"):
        assert abs(out["ledger_sum"][arm] - out["header_sum"][arm]) <= 5e-9 * n, (arm, out)


def test_split_90_10_sticky_and_ledger_sums(proxy, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = proxy(_config(tmp_path, upstream, SPLIT))
    n = 2000
    out = _split_run(live.url, engine, n, users=n // 5)
    _assert_split(out, n)
    metrics = httpx.get(live.url + "/metrics").text
    assert 'thrifty_experiment_requests_total{arm="b",experiment="split",outcome="ok"}' in metrics


@pytest.mark.slow
def test_split_90_10_over_10000_requests(proxy, upstream: FakeUpstream, tmp_path: Path) -> None:
    live, engine = proxy(_config(tmp_path, upstream, SPLIT))
    upstream.record = False
    n = 10_000
    t = time.perf_counter()
    out = _split_run(live.url, engine, n, users=n // 5)
    print(f"10k split: {dict(out['counts'])} in {time.perf_counter() - t:.1f}s; ledger {out['ledger_sum']}; "
          f"responses {dict(out['header_sum'])}")
    _assert_split(out, n)
    upstream.record = True


def _script_effect(upstream: FakeUpstream, n: int, seed: int, *, b_model: str, b_extra_s: float) -> None:
    """Per model: random token counts (same distribution for both) and a latency of 10-20 ms, B + b_extra_s."""
    rng = random.Random(seed)
    for model, extra in (("exp-a", 0.0), (b_model, b_extra_s)):
        upstream.script(*[Reply(usage=usage(rng.randint(50, 150), rng.randint(20, 200)),
                                delay=rng.uniform(0.010, 0.020) + extra) for _ in range(n)], model=model)


def test_known_effect_through_the_proxy(proxy, upstream: FakeUpstream, tmp_path: Path) -> None:
    """Arm B: a model priced 20 % lower whose upstream answers 5 ms later. The report finds both effects,
    decided, with intervals that contain the truth."""
    exp = [{"name": "effect", "control": "a", "stickiness": "user",
            "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "model": "exp-b"}]}]
    live, engine = proxy(_config(tmp_path, upstream, exp))
    n = 800
    _script_effect(upstream, n, seed=11, b_model="exp-b", b_extra_s=0.005)
    bodies = [{"model": "exp-a", "user": f"u{i}", "messages": [{"role": "user", "content": "hello"}]} for i in range(n)]
    assert all(r.status_code == 200 for r in _send(live.url, bodies, concurrency=4))
    engine.ledger.flush()
    # At alpha 0.001: an interval that is right 95 % of the time would fail a correct report once in twenty
    # suite runs. Both effects must still be decided at this level.
    rep = report_mod.build(engine.ledger, "effect", control="a", arms=["a", "b"],
                           shares=engine.experiments.weights("effect"), alpha=0.001)
    cost, lat = rep["vs_control"]["b"]["cost_usd"], rep["vs_control"]["b"]["upstream_ms"]
    print(f"known effect: cost rel {cost.rel:+.2%} CI [{cost.rel_ci.lo:+.2%}, {cost.rel_ci.hi:+.2%}] decided "
          f"{cost.decided}; upstream latency {lat.diff:+.2f} ms CI [{lat.ci.lo:+.2f}, {lat.ci.hi:+.2f}] always-valid "
          f"[{lat.cs.lo:+.2f}, {lat.cs.hi:+.2f}] decided {lat.decided}; arms {rep['arms']['a']['requests']}/"
          f"{rep['arms']['b']['requests']}")
    assert cost.rel_ci.contains(-0.20) and cost.decided, cost
    # Latency through loopback servers on a shared machine has heavier tails than the test's model: the truth
    # is held to the always-valid interval (the one the sequential decision rests on); the fixed 95 % one
    # held it in 8 of 9 runs on a loaded 2-core machine (results/experiments/figures.md).
    assert lat.cs.contains(5.0) and lat.decided, lat
    text = report_mod.render(rep)
    assert "cost_usd" in text and "upstream_ms" in text and "yes (p=" in text


def test_aa_through_the_proxy_is_not_decided(proxy, upstream: FakeUpstream, tmp_path: Path) -> None:
    exp = [{"name": "aa", "control": "a", "stickiness": "user", "alpha": 0.01,
            "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "model": "exp-a"}]}]
    live, engine = proxy(_config(tmp_path, upstream, exp))
    n = 600
    _script_effect(upstream, n, seed=3, b_model="exp-a", b_extra_s=0.0)  # one queue: both arms draw from it
    bodies = [{"model": "exp-a", "user": f"u{i}", "messages": [{"role": "user", "content": "hi"}]} for i in range(n)]
    assert all(r.status_code == 200 for r in _send(live.url, bodies, concurrency=4))
    engine.ledger.flush()
    rep = report_mod.build(engine.ledger, "aa", control="a", arms=["a", "b"], shares=engine.experiments.weights("aa"),
                           alpha=0.01)
    print("A/A through the proxy: " + "; ".join(
        f"{m} diff {d.diff:+.3g} always-valid [{d.cs.lo:+.3g}, {d.cs.hi:+.3g}] p={d.p_always_valid:.2f} decided {d.decided}"
        for m, d in rep["vs_control"]["b"].items() if m in ("cost_usd", "tokens", "upstream_ms")))
    for metric in ("cost_usd", "tokens", "upstream_ms"):
        assert not rep["vs_control"]["b"][metric].decided, (metric, rep["vs_control"]["b"][metric])


def test_guard_rail_stops_a_failing_arm_within_its_window(proxy, upstream: FakeUpstream, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    window = 2.0
    exp = [{"name": "guarded", "control": "a", "stickiness": "user",
            "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "model": "exp-b"}],
            "guard": {"max_error_rate": 0.5, "window_s": window, "min_requests": 10}}]
    live, engine = proxy(_config(tmp_path, upstream, exp))
    bodies = [{"model": "exp-a", "user": f"u{i % 40}", "messages": [{"role": "user", "content": "hi"}]}
              for i in range(80)]
    assert all(r.status_code == 200 for r in _send(live.url, bodies, concurrency=1))
    # B's upstream starts failing.
    upstream.script(*[Reply.error_status(500, "boom") for _ in range(10_000)], model="exp-b")
    t_fail = time.monotonic()
    stopped_at = None
    b_errors = 0
    with httpx.Client(base_url=live.url, timeout=10) as h:
        for i in range(400):
            r = h.post("/v1/chat/completions", json=bodies[i % len(bodies)])
            b_errors += r.status_code >= 500
            if all(a.name != "b" for a in engine.experiments.live[0].lead_to):  # b's slot now leads to control
                stopped_at = time.monotonic()
                break
        assert stopped_at is not None and stopped_at - t_fail <= window, (stopped_at, b_errors)
        print(f"guard rail: arm b stopped {stopped_at - t_fail:.3f} s after its upstream began failing "
              f"(window {window} s), after {b_errors} failed requests")
        deadline = time.monotonic() + 5
        while "b" not in engine.experiments.state("guarded").stopped_arms and time.monotonic() < deadline:
            time.sleep(0.01)  # persisted (state file, audit) off the request path
        # Every request now succeeds: B's users are served by control.
        after = [h.post("/v1/chat/completions", json=b) for b in bodies[:40]]
        assert all(r.status_code == 200 and r.headers["x-thrifty-model"] == "exp-a" for r in after)
        shown = h.get("/admin/experiments/guarded", headers=AUTH).json()
    upstream.unscript("exp-b")
    assert shown["state"]["stopped_arms"]["b"].startswith("error rate")
    assert shown["state"]["events"][0]["arm"] == "b" and shown["shares"] == {"a": 1.0, "b": 0.0}
    assert "guard rail: arm b stopped" in report_mod.render(report_mod.build(
        engine.ledger, "guarded", control="a", arms=["a", "b"], shares=shown["shares"],
        state=engine.experiments.state("guarded")))
    deadline = time.monotonic() + 5
    while not (audit := engine.audit.recent(action_prefix="experiment.")) and time.monotonic() < deadline:
        time.sleep(0.01)  # audited off the request path, after the state file
    assert [(e.action, e.actor) for e in audit] == [("experiment.guard_stop", "guard")]
    assert 'thrifty_experiment_guard_stops_total{arm="b",experiment="guarded"} 1.0' in httpx.get(
        live.url + "/metrics").text


def test_arms_that_change_the_answer_do_not_share_cache_entries(proxy, upstream: FakeUpstream, tmp_path: Path) -> None:
    """A policy arm gets its own partition; a cache-settings arm shares control's."""
    exps = [{"name": "pol", "control": "a", "stickiness": "user", "target": {"tenants": ["default"]},
             "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "policy": "cost"}]}]
    cfg = _config(tmp_path, upstream, exps)
    cfg["cache"] = {"encoder": "hashing", "mode": "on"}
    live, engine = proxy(cfg)
    arm_of = {u: engine.experiments.assign(_req(u), "default", None, _Opts()) for u in (f"p{i}" for i in range(40))}
    ua = next(u for u, a in arm_of.items() if a is not None and a.arm.name == "a")
    ua2 = next(u for u, a in arm_of.items() if a is not None and a.arm.name == "a" and u != ua)
    ub = next(u for u, a in arm_of.items() if a is not None and a.arm.name == "b")
    with httpx.Client(base_url=live.url, timeout=10) as h:
        ask = lambda user: h.post("/v1/chat/completions", json=_req_json(user)).headers["x-thrifty-cache"]  # noqa: E731
        assert ask(ua) == "miss"
        assert ask(ua2) == "exact"  # the same arm shares its entries (stickiness is per user, not per entry)
        assert ask(ub) == "miss"  # arm b (another policy) never reads arm a's answer
        assert ask(ub) == "exact"


def _req_json(user: str) -> dict[str, Any]:
    return {"model": "auto", "user": user, "messages": [{"role": "user", "content": "What is the capital of France?"}]}


def _req(user: str) -> Any:
    import msgspec

    from router.types import ChatRequest

    return msgspec.convert(_req_json(user), ChatRequest)


class _Opts:
    namespace = None
    task = None


def test_admin_create_promote_rollback_stop_audited_and_persisted(proxy, upstream: FakeUpstream, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_ADMIN_KEY", ADMIN)
    cfg = _config(tmp_path, upstream, [])
    live, engine = proxy(cfg)
    body = {"name": "cheap", "control": "a", "stickiness": "tenant",
            "arms": [{"name": "a", "weight": 0}, {"name": "b", "weight": 1, "model": "exp-b"}]}
    ask = {"model": "exp-a", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=live.url, timeout=10) as h:
        assert h.get("/admin/experiments").status_code == 401
        assert h.post("/admin/experiments", headers=AUTH, json=body).status_code == 201
        r = h.post("/admin/experiments", headers=AUTH, json=body)
        assert r.status_code == 409 and "already exists" in r.json()["error"]["message"]
        bad = h.post("/admin/experiments", headers=AUTH, json={**body, "name": "x2", "control": "zz"})
        assert bad.status_code == 400 and "control 'zz'" in bad.json()["error"]["message"]
        bad = h.post("/admin/experiments", headers=AUTH, json={**body, "name": "x3", "arms": [
            {"name": "a", "weight": 1}, {"name": "b", "weight": 1, "model": "no-such-model"}]})
        assert bad.status_code == 400 and "unknown model 'no-such-model'" in bad.json()["error"]["message"]
        assert h.post("/v1/chat/completions", json=ask).headers["x-thrifty-model"] == "exp-b"
        assert h.post("/admin/experiments/cheap/rollback", headers=AUTH).json()["shares"] == {"a": 1.0, "b": 0.0}
        assert h.post("/v1/chat/completions", json=ask).headers["x-thrifty-model"] == "exp-a"
        r = h.post("/admin/experiments/cheap/promote", headers=AUTH, json={"arm": "nope"})
        assert r.status_code == 400 and "no arm 'nope'" in r.json()["error"]["message"]
        promoted = h.post("/admin/experiments/cheap/promote", headers=AUTH, json={"arm": "b"}).json()
        assert promoted["state"]["status"] == "promoted" and promoted["shares"]["b"] == 1.0
        assert h.post("/v1/chat/completions", json=ask).headers["x-thrifty-model"] == "exp-b"
        got = h.get("/admin/experiments/cheap", headers=AUTH).json()
        assert got["report"]["arms"]["b"]["requests"] == 2 and got["report"]["arms"]["a"]["requests"] == 1
        png = h.get("/admin/experiments/cheap/plot.png", headers=AUTH)
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert h.get("/admin/experiments/nope", headers=AUTH).status_code == 404
        assert h.post("/admin/experiments/cheap/stop", headers=AUTH).json()["state"]["status"] == "stopped"
        assert h.post("/v1/chat/completions", json=ask).headers["x-thrifty-model"] == "exp-a"  # not assigned
    actions = [e.action for e in engine.audit.recent(action_prefix="experiment.")]
    assert actions == ["experiment.stop", "experiment.promote", "experiment.rollback", "experiment.create"]
    assert all(e.actor == "admin-key" or e.actor == "admin" for e in engine.audit.recent(action_prefix="experiment."))
    # A restart on the same data directory keeps the experiment and its state.
    again = Engine.from_config(cfg)
    try:
        assert again.experiments.state("cheap").status == "stopped"
        assert again.experiments.config("cheap").arm("b").model == "exp-b"
    finally:
        again.close()


def test_streams_and_the_anthropic_door_keep_the_users_arm(proxy, upstream: FakeUpstream, tmp_path: Path) -> None:
    """One user keeps one arm whether it streams or speaks Anthropic (metadata.user_id is the user)."""
    exp = [{"name": "doors", "control": "a", "stickiness": "user",
            "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "model": "exp-b"}]}]
    live, engine = proxy(_config(tmp_path, upstream, exp))
    users = [f"door-{i}" for i in range(12)]
    want = {u: engine.experiments.assign(_req(u), "default", None, _Opts()).arm.name for u in users}  # type: ignore[union-attr]
    assert set(want.values()) == {"a", "b"}
    with httpx.Client(base_url=live.url, timeout=10) as h:
        for u in users:
            model = "exp-b" if want[u] == "b" else "exp-a"
            with h.stream("POST", "/v1/chat/completions", json={
                    "model": "exp-a", "user": u, "stream": True,
                    "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status_code == 200 and r.headers["x-thrifty-model"] == model
                r.read()
            m = h.post("/v1/messages", json={"model": "exp-a", "max_tokens": 20, "metadata": {"user_id": u},
                                             "messages": [{"role": "user", "content": "hi"}]})
            assert m.status_code == 200 and m.headers["x-thrifty-model"] == model, m.text
    engine.ledger.flush()
    rows = engine.ledger.query("SELECT arm, stream, COUNT(*) AS n FROM requests WHERE experiment = 'doors' "
                               "GROUP BY arm, stream")
    assert sum(r["n"] for r in rows) == 2 * len(users)
    assert {(r["arm"], r["stream"]) for r in rows} == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}


def test_feedback_scores_per_arm(proxy, upstream: FakeUpstream, tmp_path: Path) -> None:
    """Ratings sent to POST /v1/feedback are the arms' feedback metric (joined on the request id)."""
    exp = [{"name": "fb", "control": "a", "stickiness": "user",
            "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "model": "exp-b"}]}]
    live, engine = proxy(_config(tmp_path, upstream, exp))
    with httpx.Client(base_url=live.url, timeout=10) as h:
        rated = Counter()
        for i in range(30):
            r = h.post("/v1/chat/completions", json={"model": "exp-a", "user": f"f{i}",
                                                     "messages": [{"role": "user", "content": "hi"}]})
            model = r.headers["x-thrifty-model"]
            if i % 3:  # two in three get a rating: arm a's answers good, arm b's 0.25
                body = {"request_id": r.headers["x-thrifty-request-id"]}
                body.update({"rating": "good"} if model == "exp-a" else {"score": 0.25})
                assert h.post("/v1/feedback", json=body).status_code == 200
                rated[model] += 1
    engine.ledger.flush()
    rep = report_mod.build(engine.ledger, "fb", control="a", arms=["a", "b"], shares=engine.experiments.weights("fb"))
    fa, fb = rep["arms"]["a"]["metrics"]["feedback"], rep["arms"]["b"]["metrics"]["feedback"]
    assert (fa.n, fa.value) == (rated["exp-a"], 1.0) and (fb.n, fb.value) == (rated["exp-b"], 0.25)


def test_judge_compares_a_sample_with_control_off_the_request_path(proxy, upstream: FakeUpstream,
                                                                    tmp_path: Path) -> None:
    """A judge that always prefers the second answer it is shown scores the arm about 0.5 (the order is
    drawn per request); its calls are ledger rows of their own, outside the arms."""
    exp = [{"name": "judged", "control": "a", "stickiness": "user",
            "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "model": "exp-b"}],
            "judge": {"model": "exp-judge", "sample": 1.0, "max_pending": 64}}]
    live, engine = proxy(_config(tmp_path, upstream, exp))
    upstream.script(*[Reply(text="1") for _ in range(500)], model="exp-judge")
    with httpx.Client(base_url=live.url, timeout=10) as h:
        models = [h.post("/v1/chat/completions", json={"model": "exp-a", "user": f"j{i}", "messages": [
            {"role": "user", "content": "hi"}]}).headers["x-thrifty-model"] for i in range(60)]
    n_b = models.count("exp-b")
    assert 10 < n_b < 50
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        labels = engine.ledger.query("SELECT request_id, score, detail FROM labels WHERE source = 'judge'")
        if len(labels) == n_b:
            break
        time.sleep(0.05)
    assert len(labels) == n_b
    engine.ledger.flush()  # the requests' rows are written behind; the labels may land first
    arm_of = {r["request_id"]: r["arm"] for r in engine.ledger.query(
        "SELECT request_id, arm FROM requests WHERE experiment = 'judged'")}
    assert {arm_of[r["request_id"]] for r in labels} == {"b"}  # only the non-control arm is judged
    swapped = [json.loads(r["detail"])["swapped"] for r in labels]
    assert all(r["score"] == (0.0 if s else 1.0) for r, s in zip(labels, swapped, strict=True))
    assert 0 < sum(swapped) < n_b
    engine.ledger.flush()
    extra = engine.ledger.query("SELECT route, model, COUNT(*) AS n, SUM(cost_usd) AS c FROM requests "
                                "WHERE experiment IS NULL GROUP BY route, model ORDER BY model")
    assert [(r["route"], r["model"], r["n"]) for r in extra] == [("judge:judged", "exp-a", n_b),
                                                                ("judge:judged", "exp-judge", n_b)]
    assert all(r["c"] > 0 for r in extra)
    rep = report_mod.build(engine.ledger, "judged", control="a", arms=["a", "b"],
                           shares=engine.experiments.weights("judged"))
    j = rep["arms"]["b"]["metrics"]["judge"]
    assert j.n == n_b and j.value == pytest.approx(1 - sum(swapped) / n_b)
    assert rep["arms"]["a"]["metrics"]["judge"].n == 0


def test_judge_reply_parsing() -> None:
    from engine._experiment_judge import parse_score

    assert parse_score("0.73") == 0.73 and parse_score("B: 1") == 1.0 and parse_score(".5") == 0.5
    assert parse_score("Answer B, probability 0.9.") == 0.9
    assert parse_score("7") is None and parse_score("1.5") is None and parse_score("") is None


def test_route_arm_tries_its_provider_first(proxy, upstream: FakeUpstream, tmp_path: Path) -> None:
    """An arm with `route: <provider>` is served by that provider (the others stay as fallbacks)."""
    exp = [{"name": "via", "control": "a", "stickiness": "user",
            "arms": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50, "route": "fake"}]}]
    cfg = _config(tmp_path, upstream, exp, routes={"fake": ["*"], "fake2": ["*"]})
    cfg["providers"] = [*cfg["providers"], {**cfg["providers"][0], "name": "fake2"}]
    live, engine = proxy(cfg)
    users = [f"r{i}" for i in range(16)]
    want = {u: engine.experiments.assign(_req(u), "default", None, _Opts()).arm.name for u in users}  # type: ignore[union-attr]
    assert set(want.values()) == {"a", "b"}
    with httpx.Client(base_url=live.url, timeout=10) as h:
        for u in users:
            r = h.post("/v1/chat/completions", json={"model": "exp-a", "user": u,
                                                     "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
            assert r.headers["x-thrifty-provider"] == ("fake" if want[u] == "b" else "fake2")
    engine.ledger.flush()
    rows = engine.ledger.query("SELECT arm, provider, COUNT(*) AS n FROM requests WHERE experiment = 'via' "
                               "GROUP BY arm, provider")
    # Without the arm the router ranks fake2's route first (routes added later go first): control stays there.
    assert {(r["arm"], r["provider"]) for r in rows} == {("a", "fake2"), ("b", "fake")}
