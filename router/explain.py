"""A routing decision as rich renderables, for ``thrifty route "prompt"`` and the admin API."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from router.rank import Decision


def decision_table(decision: Decision, width: int = 120) -> Group:
    """Header (task, confidence, policy, rules), the ranked candidates, and every dropped model with why.
    Under 120 columns of ``width`` the model id and the reasons (rank and quality, already in their
    columns) are left out, so 80 columns stay readable."""
    head = Text()
    head.append(f"task {decision.task}", style="bold")
    head.append(f" (confidence {decision.confidence:.2f})  policy {decision.policy}")
    if decision.policy == "target" and decision.quality_target is not None:
        head.append(f"  target {decision.quality_target:.2f}")
    if decision.pinned:
        head.append(f"  pinned {decision.pinned}")
    head.append(f"  ~{decision.prompt_tokens} prompt tokens")
    parts: list[Text | Table] = [head]
    parts += [Text(f"rule: {r}", style="cyan") for r in decision.rules]
    wide = width >= 120
    ranked = Table(title="candidates (tried in this order)", box=box.SIMPLE_HEAD)
    cols = (("#", "right"), ("deployment", "left")) + ((("model", "left"),) if wide else ()) + (
        ("quality", "right"), ("expected $", "right")) + ((("why", "left"),) if wide else ())
    for col, justify in cols:
        ranked.add_column(col, justify=justify, no_wrap=col != "why")  # type: ignore[arg-type]
    for n, c in enumerate(decision.candidates, 1):
        row = [str(n), c.deployment] + ([c.model.id] if wide else [])
        row += [f"{c.predicted_quality:.3f}", f"{c.expected_cost_usd:.6f}"] + (["; ".join(c.reasons)] if wide else [])
        ranked.add_row(*row, style="bold green" if n == 1 else None)
    parts.append(ranked)
    if decision.dropped:
        dropped = Table(title="dropped before scoring", box=box.SIMPLE_HEAD)
        dropped.add_column("model")
        dropped.add_column("reason", overflow="fold")
        for model, reason in decision.dropped:
            dropped.add_row(model, reason)
        parts.append(dropped)
    return Group(*parts)
