"""Cut the schemas thrifty's wire tests need out of the official OpenAI OpenAPI description.

    git clone https://github.com/openai/openai-openapi && cd openai-openapi
    python tests/data/openapi/extract.py openapi.json > tests/data/openapi/openai_wire_schemas.json

Keeps each root schema below and every schema reachable from it through ``$ref`` (transitively), verbatim;
writes them as one JSON Schema document whose ``$defs`` hold them, the refs rewritten from
``#/components/schemas/X`` to ``#/$defs/X``. Nothing is edited by hand.
"""

from __future__ import annotations

import json
import sys
from typing import Any

ROOTS = ["CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "ErrorResponse",
         "ListModelsResponse", "Model", "CreateEmbeddingResponse", "CreateChatCompletionRequest", "Response",
         "ResponseStreamEvent", "CreateEmbeddingRequest"]
PREFIX = "#/components/schemas/"


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"][len(PREFIX):]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_refs, node)) if node else set()
    return set()


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace(PREFIX, "#/$defs/") if k == "$ref" else _rewrite(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def main(path: str) -> None:
    with open(path) as f:
        spec = json.load(f)
    schemas = spec["components"]["schemas"]
    keep: set[str] = set()
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(_refs(schemas[name]) - keep)
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema",
           "x-source": {"openapi": spec["openapi"], "info.version": spec["info"]["version"]},
           "$defs": {name: _rewrite(schemas[name]) for name in sorted(keep)}}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
