"""What the router's ranking hands to dispatch: a model, the route to reach it, and why it was chosen."""

from __future__ import annotations

import msgspec

from models.schema import ModelEntry, Price, Route


class Candidate(msgspec.Struct, frozen=True):
    model: ModelEntry
    route: Route
    predicted_quality: float = 0.0
    expected_cost_usd: float = 0.0
    reasons: tuple[str, ...] = ()

    @property
    def price(self) -> Price:
        """The price this route charges: the gateway's own if it has one, else the model's list price."""
        return self.route.price or self.model.price

    @property
    def deployment(self) -> str:
        return self.route.deployment
