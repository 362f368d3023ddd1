"""The proxy's doors besides Chat Completions: each decodes its wire format into the one internal
``ChatRequest`` (or, for embeddings, its own request), runs the same pipeline, and encodes the answer back
into the caller's format.

    POST /v1/messages, /v1/messages/count_tokens   Anthropic Messages (anthropic_messages)
    POST /v1/responses                             OpenAI Responses (responses)
    POST /v1/embeddings                            OpenAI Embeddings (embeddings)
    GET  /v1/models, /v1/models/{model}            served models only (models)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import Route

from engine.doors.models import route_handlers

if TYPE_CHECKING:
    from engine.server import Proxy


def door_routes(proxy: Proxy) -> list[Route]:
    from engine.doors.anthropic_messages import MessagesDoor
    from engine.doors.embeddings import EmbeddingsDoor
    from engine.doors.models import ModelsDoor
    from engine.doors.responses import ResponsesDoor

    messages = MessagesDoor(proxy)
    responses = ResponsesDoor(proxy)
    embeddings = EmbeddingsDoor(proxy)
    models = ModelsDoor(proxy, embeddings)
    routes = []
    for prefix in ("/v1", ""):
        routes += [
            Route(f"{prefix}/messages", messages.handle, methods=["POST"]),
            Route(f"{prefix}/messages/count_tokens", messages.count_tokens, methods=["POST"]),
            Route(f"{prefix}/responses", responses.handle, methods=["POST"]),
            Route(f"{prefix}/embeddings", embeddings.handle, methods=["POST"]),
        ]
    routes += [
        Route("/v1/models", models.list, methods=["GET"]),
        Route("/v1/models/{model:path}", models.get, methods=["GET"]),
    ]
    return routes


__all__ = ["door_routes", "route_handlers"]
