"""The router's exceptions.

```
RouterError
├── ConfigError                  a provider config is wrong (names the key)
├── ProviderError                one upstream call failed; mapped at the provider boundary
│   ├── ConnectFailed            kind "connect"        retryable
│   ├── UpstreamTimeout          kind "timeout"        retryable
│   │   └── StreamStalled        kind "stall"          retryable (before the first content chunk)
│   ├── RateLimited              kind "rate_limit"     retryable (429, honours Retry-After)
│   ├── ServerError              kind "server"         retryable (408, 5xx)
│   ├── MalformedResponse        kind "malformed"      retryable (bad JSON, wrong content type, too big)
│   ├── IncompleteStream         kind "incomplete"     retryable before content; fatal after
│   ├── ContextLengthExceeded    kind "context_length" no retry; fall back to a larger window
│   ├── BadRequest               kind "bad_request"    400 / 422: fail at once
│   ├── AuthError                kind "auth"           401 / 403: fail at once
│   └── NotFound                 kind "not_found"      404: fail at once
└── DispatchError                carries every Attempt (deployment, kind, status, message, elapsed)
    ├── AllAttemptsFailed        every candidate failed or was skipped
    │   └── DeadlineExceeded     the total deadline ran out
    ├── UpstreamError            the caller's own mistake (400/401/403/404/422); no fallback
    ├── CircuitsOpen             every usable deployment's circuit is open (503 + Retry-After; also a NoCandidatesError)
    └── StreamInterrupted        a stream failed after content was sent
```

Messages never contain API keys: providers build them from status codes and upstream bodies, and
``redact`` strips any configured secret that an upstream might echo back.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec


class RouterError(Exception):
    """Base class of every error the router raises."""


class ConfigError(RouterError, ValueError):
    """A provider configuration is invalid."""


class ProviderError(RouterError):
    """One call to one upstream failed. ``retryable`` decides retry on the same deployment."""

    kind: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False
    counts_against_breaker: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.retry_after = retry_after
        # The upstream's own error ``code``/``type``/``param`` (e.g. ``content_policy_violation``): a 4xx
        # passed back to the caller keeps its meaning.
        self.code = code
        self.type = type
        self.param = param

    def __str__(self) -> str:
        status = f" {self.status}" if self.status is not None else ""
        return f"{self.provider or 'provider'}: {self.kind}{status}: {self.message}"


class _Transient(ProviderError):
    retryable = True
    counts_against_breaker = True


class ConnectFailed(_Transient):
    kind = "connect"


class UpstreamTimeout(_Transient):
    kind = "timeout"


class StreamStalled(UpstreamTimeout):
    kind = "stall"


class RateLimited(_Transient):
    kind = "rate_limit"


class ServerError(_Transient):
    kind = "server"


class MalformedResponse(_Transient):
    kind = "malformed"


class IncompleteStream(_Transient):
    kind = "incomplete"


class ContextLengthExceeded(ProviderError):
    kind = "context_length"


class BadRequest(ProviderError):
    kind = "bad_request"


class AuthError(ProviderError):
    kind = "auth"


class NotFound(ProviderError):
    kind = "not_found"


class Attempt(msgspec.Struct, frozen=True):
    """One try of one deployment; ``error`` is None for the attempt that succeeded."""

    deployment: str
    elapsed: float  # seconds
    kind: str | None = None  # the ProviderError kind, "circuit_open", "deadline", ...
    status: int | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.error is None:
            return f"{self.deployment}: ok ({self.elapsed * 1000:.1f} ms)"
        status = f" {self.status}" if self.status is not None else ""
        return f"{self.deployment}: {self.kind}{status}: {self.error} ({self.elapsed * 1000:.1f} ms)"


class DispatchError(RouterError):
    """A dispatch failed; ``attempts`` lists every try, in order."""

    def __init__(self, message: str, attempts: list[Attempt]) -> None:
        self.attempts = attempts
        lines = "; ".join(a.describe() for a in attempts) or "no attempt was made"
        super().__init__(f"{message} [{len(attempts)} attempt(s): {lines}]")
        self.summary = message


class AllAttemptsFailed(DispatchError):
    pass


class DeadlineExceeded(AllAttemptsFailed):
    pass


class UpstreamError(DispatchError):
    """The upstream rejected the request itself; retrying elsewhere would fail the same way."""

    def __init__(self, message: str, attempts: list[Attempt], cause: ProviderError) -> None:
        super().__init__(message, attempts)
        self.status = cause.status
        self.kind = cause.kind
        self.provider_message = cause.message
        self.code, self.type, self.param = cause.code, cause.type, cause.param


class StreamInterrupted(DispatchError):
    """A stream failed after content reached the caller; the partial answer must not be used as whole."""


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Remove every secret from ``text`` (an upstream may echo a key back in an error body)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


# ------------------------------------------------------------------------------------------ ranking
# (appended by the ranking side: router/rank.py, router/constraints.py)
class RankingError(RouterError):
    """The router could not produce a ranked list of candidates."""


class NoCandidatesError(RankingError):
    """Every model was removed before scoring; ``dropped`` says which constraint removed which model."""

    def __init__(self, message: str, dropped: list[tuple[str, str]]) -> None:
        self.dropped = dropped
        by_reason: dict[str, list[str]] = {}
        for model, reason in dropped:
            by_reason.setdefault(reason, []).append(model)
        detail = "; ".join(f"{reason}: {', '.join(models)}" for reason, models in by_reason.items())
        super().__init__(f"{message} ({detail})" if detail else message)
        self.summary = message


class CircuitsOpen(NoCandidatesError, DispatchError):
    """Every deployment able to serve the request has an open circuit: the gateway is unavailable for a
    while (a 503 with ``retry_after`` seconds), the request itself is fine. Raised by ranking (``dropped``
    names why each model went) or by dispatch (``attempts``)."""

    def __init__(self, deployments: list[str], retry_after: float | None = None,
                 attempts: list[Attempt] | None = None, dropped: list[tuple[str, str]] | None = None) -> None:
        self.deployments = deployments
        self.retry_after = retry_after
        self.attempts = attempts or []
        self.dropped = dropped or []
        self.summary = f"circuit open for {', '.join(deployments) or 'every deployment'}"
        RouterError.__init__(self, self.summary)


class UnknownModel(RankingError, KeyError):
    """A pinned model (or a rule's / fallback's model) that is not in the catalog."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StateError(RankingError, ValueError):
    """A saved classifier / predictor file is missing, corrupt, or from an incompatible version."""
