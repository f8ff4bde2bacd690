"""HTTP pieces shared by the controllers."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from litestar import Response
from litestar.connection import ASGIConnection
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter

from memanto_server.agents.schemas import AGENT_ID_PATTERN
from memanto_server.errors import PROBLEM_JSON, Problem
from memanto_server.lib.timeutil import iso_z

T = TypeVar("T")

SESSION_EXPIRES_HEADER = "X-Session-Expires-At"

AgentIdPath = Annotated[str, PathParameter(pattern=AGENT_ID_PATTERN, description="Agent id: 1-64 of A-Z a-z 0-9 _ -")]


def with_session_expiry(content: T, expires_ms: int, status_code: int = 200) -> Response[T]:
    """A token route's answer: its body plus the session's live expiry (ms since the epoch)."""
    return Response(content, status_code=status_code, headers={SESSION_EXPIRES_HEADER: iso_z(expires_ms)})


_PROBLEM_DESCRIPTIONS = {
    400: "Malformed JSON or unreadable body (`bad_request`)",
    401: "Missing, unknown or revoked API key; missing, malformed, forged, expired, ended or superseded session "
    "token (`missing_credentials`, `invalid_api_key`, `invalid_token`, `session_expired`, `session_ended`, "
    "`session_superseded`)",
    403: "A valid credential used for something it does not own (`agent_mismatch`, `owner_mismatch`)",
    404: "Not found within the caller's own data (`agent_not_found`, `no_active_session`, `memory_not_found`)",
    409: "Creating what exists (`agent_exists`)",
    413: "Body over the configured limit (`payload_too_large`)",
    422: "A field out of range or of the wrong type (`validation_error`, with `errors`)",
    503: "Redis or Postgres unreachable (`dependency_unavailable`); sends `Retry-After`",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem-details answers a route can give."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=_PROBLEM_DESCRIPTIONS[status],
            generate_examples=False,
        )
        for status in (*statuses, 503)
    }


KEY_ROUTE = (401, 422)
TOKEN_ROUTE = (401, 403, 422)
BODY_ROUTE = (400, 413)


def header(connection: ASGIConnection[Any, Any, Any, Any], name: bytes) -> str | None:
    """The first value of a request header, read from the ASGI scope (servers send names in
    lower case), without building Litestar's `Headers` for a look-up or two on the hot path."""
    for key, value in connection.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
