"""The catalog of LLMs: who serves them, what they cost, what they can do, how well they do it."""

from models.catalog import Catalog, Overrides, blended_price, load_overrides, validate_entry
from models.errors import CatalogError, UnknownModelError
from models.schema import TASKS, Capabilities, ModelEntry, Price, Route
from models.tokens import estimate_messages, estimate_tokens

__all__ = [
    "TASKS",
    "Capabilities",
    "Catalog",
    "CatalogError",
    "ModelEntry",
    "Overrides",
    "Price",
    "Route",
    "UnknownModelError",
    "blended_price",
    "estimate_messages",
    "estimate_tokens",
    "load_overrides",
    "validate_entry",
]
