"""Typed exceptions of the Python client, built from the server's RFC 9457 problem details.

Every error the server sends is `application/problem+json` with `type`, `title`, `status`,
`detail`, a stable machine `code` and, for 422, a list of field `errors`. The client turns
it into one of the classes below (by status) and keeps the whole body in `.problem`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MemantoError(Exception):
    """Anything the server (or the network) said no with.

    `status` is the HTTP status (None when no answer came), `code` the problem's stable
    machine word (`agent_not_found`, `session_expired`, …), `detail` a human sentence and
    `problem` the decoded problem-details body (None when the body was not one).
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        problem: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.code = code
        self.problem = problem
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def request_id(self) -> str | None:
        """The server's `X-Request-ID` of the failed request, for its logs."""
        return self.headers.get("x-request-id")

    def __str__(self) -> str:
        if self.status is None:
            return self.detail
        label = f"{self.status} {self.code}" if self.code else str(self.status)
        return f"{label}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, detail={self.detail!r})"


class AuthenticationError(MemantoError):
    """401: missing, unknown or revoked API key; expired, ended, superseded or invalid session token."""


class PermissionDeniedError(MemantoError):
    """403: a valid credential used on something it does not own (`agent_mismatch`, `owner_mismatch`)."""


class NotFoundError(MemantoError):
    """404: `agent_not_found`, `no_active_session`, `memory_not_found`, or an unknown route."""


class ConflictError(MemantoError):
    """409: creating what exists (`agent_exists`)."""


class ValidationError(MemantoError):
    """422: a field out of range or of the wrong type; `.errors` lists `{field, message, source}`."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = 422,
        code: str | None = "validation_error",
        problem: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail, status=status, code=code, problem=problem, headers=headers)
        errors = (problem or {}).get("errors")
        self.errors: list[dict[str, Any]] = (
            [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        )


class _RetryAfter(MemantoError):
    @property
    def retry_after(self) -> float | None:
        """The server's `Retry-After`, in seconds, when it sent a number."""
        value = self.headers.get("retry-after", "").strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            return None


class RateLimitedError(_RetryAfter):
    """429: too many requests; still refused after the client's retries."""


class ServiceUnavailableError(_RetryAfter):
    """503: Redis or Postgres unreachable (`dependency_unavailable`); still so after the client's retries."""


class ConnectionFailedError(MemantoError):
    """No answer at all: nothing listens, the connection broke, or the server did not answer in time."""

    def __init__(self, detail: str, *, cause: BaseException | None = None) -> None:
        super().__init__(detail, status=None, code=None)
        self.cause = cause


ERRORS_BY_STATUS: dict[int, type[MemantoError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitedError,
    503: ServiceUnavailableError,
}


def error_from_problem(
    status: int, problem: dict[str, Any] | None, *, text: str = "", headers: Mapping[str, str] | None = None
) -> MemantoError:
    """The typed exception for an error answer (`problem` is its JSON body, when it had one)."""
    detail = problem.get("detail") if problem else None
    if not isinstance(detail, str) or not detail:
        title = problem.get("title") if problem else None
        detail = title if isinstance(title, str) and title else (text.strip()[:500] or f"HTTP {status}")
    code = problem.get("code") if problem else None
    cls = ERRORS_BY_STATUS.get(status, MemantoError)
    return cls(
        detail,
        status=status,
        code=code if isinstance(code, str) else None,
        problem=problem,
        headers={k.lower(): v for k, v in (headers or {}).items()},
    )
