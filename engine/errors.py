"""thrifty's one exception tree, and its mapping to OpenAI-style error bodies.

    ThriftyError                      base of everything thrifty raises on purpose
    ├── ConfigError                   a config file or dict is wrong (names the file and the key)
    ├── RequestError          400     the request is malformed or asks for something impossible
    │   ├── PayloadTooLarge   413
    │   ├── RequestTimeout    408     the body stalled (engine.http_limits)
    │   ├── ConflictError     409     e.g. a cache import written with another encoder
    │   └── NoRouteError      400     no model satisfies the request's constraints (says which removed which)
    ├── AuthError             401     missing or unknown virtual key / admin key
    │   └── ForbiddenError    403     the key is known but may not do this
    ├── BudgetExceeded        429     a hard budget limit was reached and the policy is to reject
    ├── CacheFailure          500     the cache directory is unusable (wraps cache.errors.CacheError)
    └── UpstreamError         502     every attempt failed (carries each attempt's error)
        ├── ServiceUnavailable 503    every usable deployment's circuit is open (Retry-After)
        └── UpstreamTimeout   504     the total deadline passed first

The rooms below (``cache``, ``router``) cannot import ``engine``, so each has its own errors; they are
translated here, at the boundary, by :func:`translate` (``raise translate(e) from e``).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec


class ThriftyError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    # The pipeline's account of the request that failed (an ``engine.types.Meta``), when it got that far:
    # an error response carries the same ``x-thrifty-*`` headers as an answer.
    meta: Any = None

    def __init__(self, message: str, *, param: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.details = details

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}


class ConfigError(ThriftyError):
    type = "config_error"


class RequestError(ThriftyError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLarge(RequestError):
    status = 413
    code = "payload_too_large"


class RequestTimeout(RequestError):
    status = 408
    code = "request_timeout"


class ConflictError(RequestError):
    status = 409
    code = "conflict"


class NoRouteError(RequestError):
    code = "no_route"


class AuthError(ThriftyError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ForbiddenError(AuthError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class BudgetExceeded(ThriftyError):
    status = 429
    type = "budget_exceeded"
    code = "budget_exceeded"


class CacheFailure(ThriftyError):
    status = 500
    type = "cache_error"


class UpstreamError(ThriftyError):
    status = 502
    type = "upstream_error"


class ServiceUnavailable(UpstreamError):
    """Every deployment that could answer has an open circuit: retry after ``retry_after`` seconds."""

    status = 503
    type = "service_unavailable"
    code = "circuit_open"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = max(1, math.ceil(retry_after or 0))  # whole seconds, as Retry-After wants


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "deadline_exceeded"


def _attempts_of(exc: BaseException) -> list[dict[str, Any]] | None:
    attempts = getattr(exc, "attempts", None)
    if not attempts:
        return None
    return [msgspec.to_builtins(a) if isinstance(a, msgspec.Struct) else {"error": str(a)} for a in attempts]


def _translation_table() -> list[tuple[type[BaseException], type[ThriftyError]]]:
    # Imported lazily: translation happens only on the error path. Order matters: subclasses first.
    from cache import errors as cache_errors
    from models import errors as model_errors
    from router import errors as router_errors

    return [
        (cache_errors.CacheInputError, RequestError),
        (cache_errors.CacheError, CacheFailure),
        (model_errors.UnknownModelError, RequestError),
        (model_errors.CatalogError, ConfigError),
        (router_errors.CircuitsOpen, ServiceUnavailable),
        (router_errors.NoCandidatesError, NoRouteError),
        (router_errors.UnknownModel, RequestError),
        (router_errors.DeadlineExceeded, UpstreamTimeout),
        (router_errors.UpstreamError, UpstreamError),
        (router_errors.DispatchError, UpstreamError),
        (router_errors.ProviderError, UpstreamError),
        (router_errors.ConfigError, ConfigError),
        (router_errors.RouterError, RequestError),
    ]


def translate(exc: BaseException) -> ThriftyError:
    """Map a lower room's error to the engine's tree (the caller raises it ``from`` the original)."""
    if isinstance(exc, ThriftyError):
        return exc
    if isinstance(exc, msgspec.ValidationError | msgspec.DecodeError):
        return RequestError(f"invalid request: {exc}")
    for source, target in _translation_table():
        if isinstance(exc, source):
            status = getattr(exc, "status", None)
            # The caller's own mistake reported by the provider (400/404/422) is passed back as a
            # 400-class answer with the provider's message; a rejected key (401/403) is the operator's
            # configuration, so it stays a gateway failure (502).
            if target is UpstreamError and isinstance(status, int) and status in (400, 404, 422):
                return _passed_back(exc)
            if target is ServiceUnavailable:
                return ServiceUnavailable(str(exc), retry_after=getattr(exc, "retry_after", None),
                                          details=_attempts_of(exc))
            return target(str(exc), details=_attempts_of(exc))
    return ThriftyError(f"internal error: {type(exc).__name__}: {exc}")


def _passed_back(exc: BaseException) -> RequestError:
    """A provider's 4xx keeps its meaning: its own ``code``, ``type`` and ``param`` where it gave them."""
    err = RequestError(str(exc), param=getattr(exc, "param", None), details=_attempts_of(exc))
    code, kind = getattr(exc, "code", None), getattr(exc, "type", None)
    if code:
        err.code = code
    if kind:
        err.type = kind
    return err
