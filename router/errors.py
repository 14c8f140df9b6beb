"""The gateway's error hierarchy.

Every failure a client can see is one of these. Each carries what OpenAI's error envelope needs
(HTTP status, `type`, `code`, `param`), so `api/errors.py` maps all of them in one place and callers
can catch at the level they care about (`UpstreamError` for any upstream trouble, say).
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of every error the gateway turns into an OpenAI-style error response."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = "internal_error"
    retryable: bool = False
    """Whether trying the same upstream again may succeed (timeouts, 5xx, 429; never a 4xx)."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}


class InvalidRequest(RouterError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(RouterError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(RouterError):
    status_code = 403
    error_type = "permission_error"
    code = "permission_denied"


class ModelNotFound(RouterError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class PayloadTooLarge(RouterError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(RouterError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True

    @property
    def retry_after_s(self) -> float | None:
        """The upstream's Retry-After, in seconds, when it sent one as a number."""
        try:
            return float(self.headers["Retry-After"])
        except (KeyError, ValueError):
            return None


class Overloaded(RouterError):
    """A backend's queue is full: answered at once with `Retry-After` rather than queued without bound."""

    status_code = 503
    error_type = "server_error"
    code = "overloaded"


class UpstreamError(RouterError):
    """A model upstream failed or answered with an error that is not the client's fault."""

    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"
    retryable = True


class UpstreamRejected(UpstreamError):
    """The upstream refused the gateway itself (bad key, unknown model): retrying cannot help."""

    code = "upstream_rejected"
    retryable = False


class UpstreamUnavailable(UpstreamError):
    status_code = 503
    code = "upstream_unavailable"


class CircuitOpen(UpstreamUnavailable):
    """The backend's circuit breaker is open: it is skipped at once instead of being called."""

    code = "circuit_open"
    retryable = False


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"


class ConfigError(RouterError):
    """A configuration or policy file is invalid; the message names the file, the line and what was expected."""

    status_code = 500
    error_type = "server_error"
    code = "config_error"


class PolicyError(ConfigError):
    code = "policy_error"


class LimitExceeded(RouterError):
    """The caller's own rate limit or budget is used up (not an upstream's): retry after `Retry-After`."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class PolicyDenied(RouterError):
    """A policy rule refused the request (`deny:`); its status is the rule's (403, 429 or 400)."""

    error_type = "permission_error"
    code = "denied_by_policy"

    def __init__(self, message: str, status: int, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status_code = status
        if status == 429:
            self.error_type = "rate_limit_error"
        elif status == 400:
            self.error_type = "invalid_request_error"
