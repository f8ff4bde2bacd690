"""HTTP pieces shared by the controllers: path parameters, credentials and problems as the
OpenAPI document states them, and the answer of a token route."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Litestar, Request, Response, Router
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import SecurityRequirement
from litestar.params import PathParameter
from litestar.routes import HTTPRoute
from litestar.serialization import default_serializer
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from memanto_server.errors import PROBLEM_JSON, InvalidInput, Problem
from memanto_server.lib.timeutil import iso_z
from memanto_server.limits import AGENT_ID_PATTERN, MAX_AGENT_ID_CHARS, MAX_MEMORY_ID_CHARS, Instant

T = TypeVar("T")

SESSION_EXPIRES_HEADER = "X-Session-Expires-At"

AgentIdPath = Annotated[
    str,
    PathParameter(
        pattern=AGENT_ID_PATTERN, max_length=MAX_AGENT_ID_CHARS, description="Agent id: 1-64 of A-Z a-z 0-9 _ -"
    ),
]
MemoryIdPath = Annotated[
    str,
    PathParameter(max_length=MAX_MEMORY_ID_CHARS, description="Memory id (a UUID; any other text is simply not found)"),
]
# Documented on the answers of token routes (their handlers set it).
SESSION_EXPIRY_DOC = [
    ResponseHeader(
        name=SESSION_EXPIRES_HEADER,
        documentation_only=True,
        description="When the session expires now (ISO-8601 UTC): extend before then.",
    )
]

# The credential schemes (components.securitySchemes of the OpenAPI document) and, per kind of
# route, the combinations that the route accepts: each entry of a list is one way in.
API_KEY_BEARER = "ApiKey"
API_KEY_HEADER = "ApiKeyHeader"
SESSION_TOKEN = "SessionToken"  # noqa: S105 - the name of a security scheme
KEY_AUTH: list[SecurityRequirement] = [{API_KEY_BEARER: []}, {API_KEY_HEADER: []}]
# A token route takes the token; an API key sent beside it must be the same owner's.
TOKEN_AUTH: list[SecurityRequirement] = [
    {SESSION_TOKEN: []},
    {SESSION_TOKEN: [], API_KEY_BEARER: []},
    {SESSION_TOKEN: [], API_KEY_HEADER: []},
]
TOKEN_OR_KEY_AUTH: list[SecurityRequirement] = [*TOKEN_AUTH, *KEY_AUTH]


class OwnRouter(Router):
    """A router made for one app: Litestar deep-copies every router it registers (so that one
    router object can be mounted in several places), which is a third of building the app.
    These are built afresh by `create_app` and mounted once, so the copy is the original."""

    def __deepcopy__(self, memo: dict[int, Any]) -> OwnRouter:
        return self


# Litestar's own JSON encoder (its default_serializer for types msgspec does not know).
_JSON = msgspec.json.Encoder(enc_hook=default_serializer)
_JSON_TYPE = "application/json"
_JSON_HEADER = (b"content-type", _JSON_TYPE.encode())
_NO_BODY = frozenset({204, 304})


class _Sent:
    """An answer whose two ASGI messages are built already."""

    __slots__ = ("_body", "_start")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self._start: Message = {"type": "http.response.start", "status": status, "headers": headers}
        self._body: Message = {"type": "http.response.body", "body": body, "more_body": False}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(self._start)
        await send(self._body)


class JSONResponse(Response[T]):
    """A JSON answer of the hot routes, sent as the same bytes by a shorter path.

    Litestar turns a `Response` into an `ASGIResponse`: a serializer made for the app's type
    encoders (pydantic's, registered because it is installed), then headers put in a
    `MutableScopeHeaders` one `setdefault` at a time. Here the body is encoded by Litestar's
    encoder and the header list is built at once (bench/README.md, "Answers"). The type
    encoders are only for types msgspec does not know (pydantic's): a body that holds one, and
    whatever else this path does not handle (cookies, background tasks, another media type, an
    answer without a body), takes Litestar's own path."""

    __slots__ = ()

    def to_asgi_response(  # type: ignore[override]
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        headers: dict[str, str] | None = None,
        media_type: str | None = None,
        status_code: int | None = None,
        **others: Any,
    ) -> ASGIApp:
        status = self.status_code or status_code or 200
        if self._is_plain(status, media_type, others):
            try:
                body = _JSON.encode(self.content)
            except (TypeError, ValueError):  # a type only the app's type encoders know
                pass
            else:
                raw = [_JSON_HEADER, (b"content-length", str(len(body)).encode())]
                merged = {**headers, **self.headers} if headers else self.headers
                raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in merged.items()]
                return _Sent(status, raw, body)
        return super().to_asgi_response(
            app, request, headers=headers, media_type=media_type, status_code=status_code, **others
        )

    def _is_plain(self, status: int, media_type: str | None, others: dict[str, Any]) -> bool:
        """A JSON body and nothing more: no cookies, background task or HEAD, a status with a body."""
        if self.cookies or self.background or others.get("background") or others.get("cookies"):
            return False
        if others.get("is_head_response") or status in _NO_BODY:
            return False
        return (self.media_type or media_type or _JSON_TYPE) == _JSON_TYPE


def with_session_expiry(content: T, expires_ms: int | str, status_code: int = 200) -> Response[T]:
    """A token route's answer: its body plus the session's live expiry (ms since the epoch, or
    already written as ISO-8601)."""
    expires = expires_ms if isinstance(expires_ms, str) else iso_z(expires_ms)
    return JSONResponse(content, status_code=status_code, headers={SESSION_EXPIRES_HEADER: expires})


_PROBLEM_DESCRIPTIONS = {
    400: "Malformed JSON, a body that is not UTF-8 or is nested too deeply (`bad_request`)",
    401: "Missing, unknown or revoked API key; missing, malformed, forged, expired, ended or superseded session "
    "token (`missing_credentials`, `invalid_api_key`, `invalid_token`, `session_expired`, `session_ended`, "
    "`session_superseded`). Sends `WWW-Authenticate`.",
    403: "A valid credential used for something it does not own (`agent_mismatch`, `owner_mismatch`)",
    404: "Not found within the caller's own data (`agent_not_found`, `no_active_session`, `memory_not_found`)",
    409: "Creating what exists (`agent_exists`)",
    413: "Body over the configured limit (`payload_too_large`)",
    415: "A body whose `Content-Type` is not JSON (`unsupported_media_type`)",
    422: "A field out of range or of the wrong type (`validation_error`, with `errors`), or an `Idempotency-Key` "
    "first used with a different request (`idempotency_key_reused`)",
    429: "Over the owner's rate limit, when the server sets one (`rate_limited`); sends `Retry-After` and "
    "`RateLimit-*`",
    503: "Redis or Postgres unreachable (`dependency_unavailable`); sends `Retry-After`",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem-details answers an /api/v2 route can give
    (429 and 503 are possible on every one of them)."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_JSON,
            description=_PROBLEM_DESCRIPTIONS[status],
            generate_examples=False,
        )
        for status in sorted({*statuses, 429, 503})
    }


KEY_ROUTE = (401, 422)
TOKEN_ROUTE = (401, 403, 422)
BODY_ROUTE = (400, 413, 415, 422)


def header(connection: ASGIConnection[Any, Any, Any, Any], name: bytes) -> str | None:
    """The first value of a request header, read from the ASGI scope (servers send names in
    lower case), without building Litestar's `Headers` for a look-up or two on the hot path."""
    for key, value in connection.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def instant(value: str | None, field: str) -> datetime | None:
    """A time given as a query parameter: RFC 3339 with a UTC offset, nothing else (not a
    number of seconds, not `now`, not a time without an offset)."""
    if value is None:
        return None
    try:
        return msgspec.convert(value, Instant)
    except msgspec.ValidationError:
        raise InvalidInput.field(
            field, "must be an RFC 3339 time with a UTC offset, e.g. 2026-03-30T16:30:00Z", "query"
        ) from None


_ALLOWED_METHODS = "memanto_allowed_methods"  # app.state key: path template → its `Allow` header


def _allowed_methods(app: Litestar) -> dict[str, bytes]:
    allowed: dict[str, bytes] | None = app.state.get(_ALLOWED_METHODS)
    if allowed is None:
        allowed = {
            route.path_format: ", ".join(sorted(route.methods)).encode()
            for route in app.routes
            if isinstance(route, HTTPRoute)
        }
        app.state[_ALLOWED_METHODS] = allowed
    return allowed


class ListEveryMethod:
    """ASGI wrapper: the `Allow` header of Litestar's own OPTIONS answer names every method
    of the path. Litestar 2 lists only the methods of the handlers registered first on a path
    (fixed in Litestar 3); this puts the route's whole list in its place.

    A request of any other method is handed to the app as is, without a layer of its own (a
    `before_send` hook would cost every response of every route).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope.get("method") != "OPTIONS":
            return self.app(scope, receive, send)
        return self._options(scope, receive, send)

    async def _options(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 204:
                template = scope.get("path_template", "")  # type: ignore[typeddict-item]
                allowed = _allowed_methods(scope["litestar_app"]).get(template)
                if allowed is not None:
                    headers = [(name, value) for name, value in message.get("headers", ()) if name.lower() != b"allow"]
                    message["headers"] = [*headers, (b"allow", allowed)]  # type: ignore[typeddict-unknown-key]
            await send(message)

        await self.app(scope, receive, send_allow)
