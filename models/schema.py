"""The catalog's schema: what a model is, where it is served, and what it costs.

Prices are USD per million tokens. Each price carries the date it was read and its source, because a
price without a date is a guess. These Structs are both the data file's format and the runtime records
(frozen); a user's catalog overrides in config decode into the same types, so unknown keys are errors.
"""

from __future__ import annotations

import msgspec

TASKS = (
    "code",
    "math",
    "reasoning",
    "summarization",
    "extraction",
    "translation",
    "creative",
    "chat",
    "classification",
)


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    input: float  # USD per 1M input tokens
    output: float  # USD per 1M output tokens
    cached_input: float | None = None  # USD per 1M cached input tokens, where the provider discounts them
    as_of: str = ""  # ISO date the price was read
    source: str = ""  # URL or document the price was read from


class Capabilities(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tools: bool = False
    vision: bool = False
    json_mode: bool = False
    reasoning: bool = False
    streaming: bool = True
    # The API continues a final assistant message (prefill): a broken stream is resumed that way.
    assistant_prefill: bool = False


class Route(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One way to reach a model: a provider (a name from the providers config) and that provider's model id."""

    provider: str  # "openai", "anthropic", "openrouter", "portkey", "together", "cortex", "ollama", ...
    model: str  # the id the provider expects, e.g. "anthropic/claude-sonnet-4.5" on OpenRouter
    price: Price | None = None  # a gateway's own price when it differs from the model's list price

    @property
    def deployment(self) -> str:
        """The key circuits, metrics and the ledger use for this route."""
        return f"{self.provider}/{self.model}"


class ModelEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    id: str  # thrifty's name for the model, e.g. "gpt-4o-mini"
    vendor: str  # who made it: openai, anthropic, google, meta, mistral, deepseek, qwen, ...
    price: Price
    context_window: int
    max_output: int
    routes: tuple[Route, ...]
    capabilities: Capabilities = Capabilities()
    quality: dict[str, float] = {}  # prior quality per task in [0, 1] (keys from TASKS)
    output_tokens: dict[str, int] = {}  # expected output tokens per task, when it differs from defaults
    aliases: tuple[str, ...] = ()
    released: str = ""
    notes: str = ""


class EmbeddingEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """An embedding model: priced per input token only (``price.output`` is 0), served on ``routes`` by
    providers that offer ``/embeddings``. Kept apart from the chat models: the router never picks one."""

    id: str
    vendor: str
    price: Price
    dimensions: int  # the native vector length
    max_input_tokens: int  # per input
    routes: tuple[Route, ...]
    adjustable_dimensions: bool = False  # accepts ``dimensions`` (shorter vectors)
    aliases: tuple[str, ...] = ()
    notes: str = ""
