"""Router.rank: policies, rules, pinned models, constraints and their explanations (no encoder)."""

from __future__ import annotations

import numpy as np
import pytest

from models import Catalog, ModelEntry, Price, Route
from models.schema import Capabilities
from router import Constraints, NoCandidatesError, RankingError, Router, RoutingRule, UnknownModel
from router.types import (
    ChatRequest,
    FunctionDef,
    ImagePart,
    ImageURL,
    Message,
    ResponseFormat,
    TextPart,
    ThriftyOptions,
    Tool,
)

VEC = np.zeros(384, dtype=np.float32)
VEC[0] = 1.0


def _m(id_: str, price: float, q: float, *, providers=("p",), ctx=100_000, out=8000, **caps) -> ModelEntry:
    return ModelEntry(id=id_, vendor="v", price=Price(price, price * 4), context_window=ctx, max_output=out,
                      routes=tuple(Route(p, id_) for p in providers), capabilities=Capabilities(**caps),
                      quality=dict.fromkeys(("code", "chat", "math"), q))


@pytest.fixture
def catalog() -> Catalog:
    return Catalog([
        _m("cheap", 0.1, 0.60, tools=True),
        _m("mid", 1.0, 0.80, tools=True, json_mode=True, providers=("p", "gw")),
        _m("best", 10.0, 0.95, tools=True, vision=True, json_mode=True, ctx=1_000_000),
        _m("small-ctx", 0.05, 0.50, ctx=2_000, out=1000),
    ])


def _req(text: str = "hello there", **kw) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)


def _router(catalog: Catalog, **kw) -> Router:
    return Router(catalog, **kw)


def test_policies_order_as_documented(catalog: Catalog) -> None:
    r = _router(catalog)
    task = Constraints(task="chat")
    ids = lambda d: list(dict.fromkeys(c.model.id for c in d.candidates))  # noqa: E731
    assert ids(r.rank(_req(), VEC, Constraints(task="chat", policy="quality")))[:3] == ["best", "mid", "cheap"]
    assert ids(r.rank(_req(), VEC, Constraints(task="chat", policy="cost")))[:3] == ["small-ctx", "cheap", "mid"]
    d = r.rank(_req(), VEC, Constraints(task="chat", policy="target", quality_target=0.75))
    assert ids(d)[:2] == ["mid", "best"]  # cheapest that meets 0.75, then the next; the rest follow
    assert d.policy == "target" and d.quality_target == 0.75
    d = r.rank(_req(), VEC, task)
    assert d.policy == "balanced" and d.task == "chat" and d.confidence == 1.0
    c = d.candidates[0]
    assert c.expected_cost_usd > 0 and 0 <= c.predicted_quality <= 1 and c.reasons


def test_expected_cost_follows_prices_and_tokens(catalog: Catalog) -> None:
    r = _router(catalog)
    short = r.rank(_req("hi"), VEC, Constraints(task="chat", policy="quality")).candidates[0]
    long = r.rank(_req("hi " * 4000), VEC, Constraints(task="chat", policy="quality")).candidates[0]
    assert long.expected_cost_usd > short.expected_cost_usd
    capped = r.rank(_req("hi", max_tokens=10), VEC, Constraints(task="chat", policy="quality")).candidates[0]
    assert capped.expected_cost_usd < short.expected_cost_usd


def test_capabilities_context_and_lists_drop_with_reasons(catalog: Catalog) -> None:
    r = _router(catalog)
    tools = [Tool(function=FunctionDef(name="f"))]
    d = r.rank(_req(tools=tools), VEC, Constraints(task="chat"))
    assert ("small-ctx", "lacks capability tools") in d.dropped
    img = ChatRequest(messages=[Message(role="user", content=[TextPart("what is this"), ImagePart(ImageURL("http://x/y.png"))])])
    d = r.rank(img, VEC, Constraints(task="chat"))
    assert {c.model.id for c in d.candidates} == {"best"}
    d = r.rank(_req(response_format=ResponseFormat(type="json_object")), VEC, Constraints(task="chat"))
    assert {c.model.id for c in d.candidates} == {"mid", "best"}
    d = r.rank(_req("word " * 3000), VEC, Constraints(task="chat"))
    assert any(m == "small-ctx" and "context window 2000" in why for m, why in d.dropped)
    d = r.rank(_req(), VEC, Constraints(task="chat", tenant="acme", allow_models=("cheap", "mid"), deny_models=("mid",)))
    assert {c.model.id for c in d.candidates} == {"cheap"}
    assert ("best", "not in the allow list of tenant acme") in d.dropped
    assert ("mid", "in the deny list of tenant acme") in d.dropped


def test_cost_ceiling_budget_and_circuits(catalog: Catalog) -> None:
    r = _router(catalog)
    d = r.rank(_req(), VEC, Constraints(task="chat", max_cost_usd=5e-4))
    assert d.candidates and all(c.expected_cost_usd <= 5e-4 for c in d.candidates)
    assert any(m == "best" and "ceiling" in why for m, why in d.dropped)
    d = r.rank(_req(), VEC, Constraints(task="chat", budget_remaining_usd=5e-4))
    assert any("remaining budget" in why for _, why in d.dropped)
    d = r.rank(_req(), VEC, Constraints(task="chat", is_open=lambda dep: dep == "p/mid"))
    assert [c.deployment for c in d.candidates if c.model.id == "mid"] == ["gw/mid"]
    d = r.rank(_req(), VEC, Constraints(task="chat", open_deployments={"p/mid", "gw/mid"}))
    assert ("mid", "circuit open: p/mid, gw/mid") in d.dropped


def test_nothing_survives_names_every_constraint(catalog: Catalog) -> None:
    r = _router(catalog, available_providers={"p"})
    with pytest.raises(NoCandidatesError) as info:
        r.rank(_req(tools=[Tool(function=FunctionDef(name="f"))]), VEC,
               Constraints(task="chat", allow_models=("small-ctx", "cheap"), max_cost_usd=1e-9))
    msg = str(info.value)
    assert "small-ctx" in msg and "lacks capability tools" in msg
    assert "cheap" in msg and "ceiling" in msg and "best" in msg and "allow list" in msg
    assert len(info.value.dropped) == 4


def test_unavailable_providers_are_not_eligible(catalog: Catalog) -> None:
    r = _router(catalog, available_providers={"gw"})
    d = r.rank(_req(), VEC, Constraints(task="chat"))
    assert [c.deployment for c in d.candidates] == ["gw/mid"]
    assert any("no configured provider" in why for _, why in d.dropped)


def test_rules_apply_first_and_are_explained(catalog: Catalog) -> None:
    rules = (RoutingRule(task="code", prefer=("best",), name="code-to-best"),
             RoutingRule(tenant="thrift", only=("cheap", "small-ctx"), policy="cost"))
    r = _router(catalog, rules=rules)
    d = r.rank(_req(), VEC, Constraints(task="code", policy="cost"))
    assert d.candidates[0].model.id == "best"
    assert any("code-to-best" in line for line in d.explain())
    d = r.rank(_req(), VEC, Constraints(task="chat", tenant="thrift"))
    assert {c.model.id for c in d.candidates} <= {"cheap", "small-ctx"} and d.policy == "cost"
    with pytest.raises(UnknownModel):
        Router(catalog, rules=(RoutingRule(prefer=("nope",)),))


def test_pinned_model_first_then_fallbacks_and_hard_constraints(catalog: Catalog) -> None:
    r = _router(catalog, fallbacks={"cheap": ("mid", "best")})
    d = r.rank(_req(model="cheap"), VEC, Constraints(task="chat"))
    assert [c.model.id for c in d.candidates] == ["cheap", "mid", "mid", "best"] and d.pinned == "cheap"
    d = r.rank(_req(model="cheap"), VEC, Constraints(task="chat", open_deployments={"p/cheap"}))
    assert d.candidates[0].model.id == "mid"  # an open circuit is not fatal: fall back
    with pytest.raises(NoCandidatesError, match=r"pinned model small-ctx.*context window"):
        r.rank(_req("word " * 3000, model="small-ctx"), VEC, Constraints(task="chat"))
    with pytest.raises(UnknownModel, match="gpt-9"):
        r.rank(_req(model="gpt-9"), VEC, Constraints(task="chat"))


def test_request_controls_and_bad_hints(catalog: Catalog) -> None:
    r = _router(catalog)
    d = r.rank(_req(thrifty=ThriftyOptions(task="math", policy="quality")), VEC)
    assert d.task == "math" and d.policy == "quality" and d.candidates[0].model.id == "best"
    d = r.rank(_req(thrifty=ThriftyOptions(max_cost_usd=2e-4)), VEC, Constraints(task="chat"))
    assert d.candidates and all(c.expected_cost_usd <= 2e-4 for c in d.candidates)
    with pytest.raises(RankingError, match="poetry"):
        r.rank(_req(), VEC, Constraints(task="poetry"))
    with pytest.raises(RankingError, match="shape"):
        r.rank(_req(), np.zeros(10, dtype=np.float32))


def test_classifier_picks_the_task_from_the_vector(catalog: Catalog) -> None:
    r = _router(catalog)
    d = r.rank(_req(), VEC)
    assert d.task in ("code", "math", "reasoning", "summarization", "extraction", "translation", "creative", "chat",
                      "classification")
    assert 0.0 < d.confidence <= 1.0


def test_shipped_catalog_ranks_with_routes_and_explanations() -> None:
    r = Router(Catalog.default(), available_providers={"openai", "anthropic"})
    d = r.rank(_req("Summarise this article"), VEC, Constraints(task="summarization"))
    assert d.candidates and all(c.route.provider in {"openai", "anthropic"} for c in d.candidates)
    lines = d.explain()
    assert lines[0].startswith("task summarization") and any(line.startswith("dropped") for line in lines)


def test_renderers_show_the_decision_and_the_catalog(catalog: Catalog) -> None:
    from rich.console import Console

    from models.render import catalog_table
    from router.explain import decision_table

    d = Router(catalog, available_providers={"p"}).rank(_req(), VEC, Constraints(task="chat", deny_models=("best",)))
    console = Console(width=200, record=True)
    console.print(decision_table(d))
    out = console.export_text()
    assert "task chat" in out and "p/mid" in out and "deny list" in out
    console.print(catalog_table(Catalog.default(), capability="vision", max_price=2.0, task="code"))
    out = console.export_text()
    assert "gemini-2.5-flash" in out and "q:code" in out and "gpt-5 " not in out
