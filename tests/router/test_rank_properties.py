"""Property: no chosen model ever violates context, capability, allow-list or cost constraints."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import Catalog, ModelEntry, Price, Route
from models.schema import Capabilities
from models.tokens import estimate_messages
from router import Constraints, NoCandidatesError, Router
from router.types import (
    ChatRequest,
    FunctionDef,
    ImagePart,
    ImageURL,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
)

TASKS = ("code", "math", "chat", "summarization")
PROVIDERS = ("a", "b", "c")


@st.composite
def catalogs(draw) -> Catalog:
    n = draw(st.integers(1, 8))
    entries = []
    for i in range(n):
        out = draw(st.integers(100, 20_000))
        ctx = draw(st.integers(out, 200_000))
        price_in = draw(st.floats(0, 20, allow_nan=False))
        provs = draw(st.lists(st.sampled_from(PROVIDERS), min_size=1, max_size=3, unique=True))
        routes = tuple(Route(p, f"m{i}", price=draw(st.none() | st.builds(Price, st.floats(0, 20), st.floats(0, 60))))
                       for p in provs)
        entries.append(ModelEntry(
            id=f"m{i}", vendor="v", price=Price(price_in, draw(st.floats(0, 60))), context_window=ctx, max_output=out,
            routes=routes,
            capabilities=Capabilities(tools=draw(st.booleans()), vision=draw(st.booleans()), json_mode=draw(st.booleans())),
            quality={t: draw(st.floats(0, 1)) for t in TASKS},
        ))
    return Catalog(entries)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    catalog=catalogs(),
    words=st.integers(1, 30_000),
    max_tokens=st.none() | st.integers(1, 30_000),
    tools=st.booleans(),
    image=st.booleans(),
    json_mode=st.booleans(),
    allow=st.none() | st.sets(st.sampled_from([f"m{i}" for i in range(8)])),
    max_cost=st.none() | st.floats(0, 0.5),
    budget=st.none() | st.floats(0, 0.5),
    policy=st.sampled_from(["quality", "balanced", "cost", "target"]),
    task=st.sampled_from(TASKS),
    open_set=st.sets(st.sampled_from([f"{p}/m{i}" for p in PROVIDERS for i in range(8)]), max_size=6),
    available=st.none() | st.sets(st.sampled_from(PROVIDERS), min_size=1),
)
def test_no_chosen_model_violates_a_hard_constraint(catalog, words, max_tokens, tools, image, json_mode, allow,
                                                     max_cost, budget, policy, task, open_set, available) -> None:
    text = "word " * words
    content: str | list = [TextPart(text), ImagePart(ImageURL("http://x/y.png"))] if image else text
    request = ChatRequest(
        messages=[Message(role="user", content=content)],
        max_tokens=max_tokens,
        tools=[Tool(function=FunctionDef(name="f"))] if tools else None,
        response_format=ResponseFormat(type="json_object") if json_mode else None,
    )
    constraints = Constraints(task=task, allow_models=tuple(allow) if allow is not None else (), max_cost_usd=max_cost,
                              budget_remaining_usd=budget, policy=policy, open_deployments=open_set)
    router = Router(catalog, available_providers=available, max_models=len(catalog))
    try:
        decision = router.rank(request, np.zeros(384, dtype=np.float32), constraints)
    except NoCandidatesError as exc:
        assert exc.dropped and {m for m, _ in exc.dropped} == set(catalog.ids)
        return
    prompt = estimate_messages([text] + (["['f']"] if tools else []))
    seen = {c.model.id for c in decision.candidates} | {m for m, _ in decision.dropped}
    assert seen == set(catalog.ids)  # every model is either a candidate or dropped with a reason
    for c in decision.candidates:
        m = c.model
        assert prompt + (max_tokens or 1) <= m.context_window
        assert max_tokens is None or max_tokens <= m.max_output
        assert not tools or m.capabilities.tools
        assert not image or m.capabilities.vision
        assert not json_mode or m.capabilities.json_mode
        assert allow is None or not allow or m.id in allow
        assert max_cost is None or c.expected_cost_usd <= max_cost
        assert budget is None or c.expected_cost_usd <= budget
        assert c.deployment not in open_set
        assert available is None or c.route.provider in available
