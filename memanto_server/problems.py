"""RFC 9457 problem-details rendering of every error that leaves the app.

Every error leaves as `application/problem+json` with a stable `code`. A dependency
outage is a 503 with `Retry-After`; anything unexpected is a 500 (and a bug), logged
with its traceback but never with credentials.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from memanto_server.errors import (
    OUTAGE_ERRORS,
    PROBLEM_JSON,
    DependencyUnavailable,
    FieldProblem,
    MemantoError,
    Problem,
    outage_backend,
)
from memanto_server.ops.metrics import DEPENDENCY_ERRORS

logger = logging.getLogger("memanto.errors")

_BACKEND_NAMES = {"redis": "Redis", "postgres": "Postgres", "other": "a backend"}  # as the problem detail says it


def _root(exc: BaseException) -> BaseException:
    """The first error of the chain that `exc` was raised from (what actually failed)."""
    seen = {id(exc)}
    while (below := exc.__cause__ or exc.__context__) is not None and id(below) not in seen:
        seen.add(id(below))
        exc = below
    return exc


def _problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response[Problem]:
    return Response(content=problem, status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)


def _type_uri(code: str) -> str:
    return f"https://memanto.dev/problems/{code.replace('_', '-')}"


def memanto_error_handler(_: Request[Any, Any, Any], exc: MemantoError) -> Response[Problem]:
    return _problem_response(
        Problem(
            type=_type_uri(exc.code),
            title=exc.title,
            status=exc.status,
            detail=exc.detail,
            code=exc.code,
            errors=exc.errors,
        ),
        exc.headers,
    )


def outage_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    backend = outage_backend(exc)
    which = _BACKEND_NAMES[backend]
    DEPENDENCY_ERRORS.labels(backend).inc()
    cause = _root(exc)
    because = f"{type(exc).__name__}" if cause is exc else f"{type(exc).__name__} from {type(cause).__name__}"
    logger.warning("dependency unavailable: %s (%s) on %s %s", which, because, request.method, _route(request))
    retry_after = str(request.app.state.settings.retry_after_seconds)
    return memanto_error_handler(
        request, DependencyUnavailable(f"{which} is unavailable; retry shortly", headers={"Retry-After": retry_after})
    )


# Parameters whose wire name cannot be their Python name (`query` is reserved by Litestar).
PARAMETER_WIRE_NAMES = {"search": "query", "memory_type": "type", "idempotency_key": "Idempotency-Key"}
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


def _field_name(key: str, message: str) -> str:
    """The field as the client knows it: `memories[3].content`, not `data` or a Python name."""
    if key == "data" or key.startswith("data."):
        missing = _MISSING_FIELD.search(message)
        key = key.removeprefix("data").lstrip(".")
        if missing:
            key = f"{key}.{missing.group(1)}" if key else missing.group(1)
        return key or "body"
    if (missing := _MISSING_FIELD.search(message)) and key:
        return f"{key}.{missing.group(1)}"
    return PARAMETER_WIRE_NAMES.get(key, key)


def validation_handler(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    problems: list[FieldProblem] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        key, message = str(item.get("key", "")), str(item.get("message", ""))
        # When a query parameter fails, Litestar also reports the unparsed body as
        # `KeyError('data')`; that is noise, not a problem of the request.
        if message == repr(key):
            continue
        key = _field_name(key, message)
        if message.startswith("Expected `str` matching regex") and "x00]" in message:
            message = "must not contain NUL characters"  # what the pattern of limits.NO_NUL means, in words
        problems.append(FieldProblem(field=key, message=message, source=item.get("source")))
    detail = "; ".join(f"{p.field}: {p.message}" for p in problems) or "the request is not valid"
    return _problem_response(
        Problem(
            type=_type_uri("validation_error"),
            title="Validation error",
            status=422,
            detail=detail,
            code="validation_error",
            errors=problems or None,
        )
    )


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("missing_credentials", "Unauthorized"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def http_exception_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    code, title = _HTTP_CODES.get(status, ("bad_request" if status < 500 else "internal_error", "Error"))
    if isinstance(exc, NotFoundException):
        detail = "no such route"
    elif isinstance(exc, MethodNotAllowedException):
        detail = "method not allowed on this route"
    elif status == 413:
        detail = "the request body is larger than this server accepts"
    elif isinstance(exc, ClientException):
        detail = exc.detail or title
    else:
        detail = title
    headers = dict(exc.headers or {})
    return _problem_response(
        Problem(type=_type_uri(code), title=title, status=status, detail=detail, code=code), headers
    )


def _route(request: Request[Any, Any, Any]) -> str:
    return str(request.scope.get("path_template", "?"))


def unexpected_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    if isinstance(exc, OUTAGE_ERRORS):
        return outage_handler(request, exc)
    logger.exception("unhandled error on %s %s", request.method, _route(request))
    return _problem_response(
        Problem(
            type=_type_uri("internal_error"),
            title="Internal server error",
            status=HTTP_500_INTERNAL_SERVER_ERROR,
            detail="an unexpected error occurred",
            code="internal_error",
        )
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    MemantoError: memanto_error_handler,
    ValidationException: validation_handler,
    HTTPException: http_exception_handler,
    Exception: unexpected_error_handler,
}
