"""Domain errors, and what a dependency outage looks like from the client libraries' side.

Services raise these; `problems.py` renders them as RFC 9457 problem details.
"""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import redis.exceptions

from memanto_server.lib.db import DatabaseUnavailable

PROBLEM_JSON = "application/problem+json"


class FieldProblem(msgspec.Struct, omit_defaults=True):
    field: str
    message: str
    source: str | None = None  # "body", "query", "path" or "header" when known


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details, plus the contract's `code` and field `errors`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] | None = None


class MemantoError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        errors: list[FieldProblem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.errors = errors
        self.headers = headers or {}


class BadRequest(MemantoError):
    pass


class Unauthorized(MemantoError):
    status = 401
    code = "invalid_token"
    title = "Unauthorized"

    def __init__(self, detail: str, *, code: str, scheme: str = "Bearer") -> None:
        error = "invalid_token" if code != "missing_credentials" else "invalid_request"
        super().__init__(
            detail,
            code=code,
            headers={"WWW-Authenticate": f'{scheme} realm="memanto", error="{error}"'},
        )


class Forbidden(MemantoError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(MemantoError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(MemantoError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InvalidInput(MemantoError):
    status = 422
    code = "validation_error"
    title = "Validation error"

    @classmethod
    def field(cls, field: str, message: str, source: str | None = None) -> InvalidInput:
        return cls(f"{field}: {message}", errors=[FieldProblem(field=field, message=message, source=source)])


class RateLimited(MemantoError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class DependencyUnavailable(MemantoError):
    status = 503
    code = "dependency_unavailable"
    title = "Service unavailable"


# What a dependency outage looks like from the client libraries' side.
REDIS_OUTAGE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # also a BUSY Redis and a reply lost twice (lib/redis_scripts.py)
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,  # a replica promoted meanwhile: the client reconnects
)
POSTGRES_OUTAGE: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,  # refused, unreachable, pool exhausted, connection broken (lib/db.py)
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout
    asyncpg.exceptions.InternalClientError,  # a connection asyncpg lost track of (lib/db.py drops it)
)
OUTAGE_ERRORS = (*REDIS_OUTAGE, *POSTGRES_OUTAGE, OSError, asyncio.TimeoutError, TimeoutError)


def outage_backend(exc: BaseException) -> str:
    """The backend an outage error came from, as a metrics label: `redis`, `postgres` or `other`.

    By the error itself, else by what it was raised from or while handling (a bare
    `OSError` or `TimeoutError` says nothing; the library error under it does)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)):
            return "redis"
        if isinstance(current, (*POSTGRES_OUTAGE, asyncpg.PostgresError, asyncpg.InterfaceError)):
            return "postgres"
        current = current.__cause__ or current.__context__
    return "other"
