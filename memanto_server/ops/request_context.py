"""Request ids on every response, and one access-log line per request."""

from __future__ import annotations

import logging
import re
import time
import uuid

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from memanto_server.ops.metrics import observe_request

access_log = logging.getLogger("memanto.access")

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_STATE_KEY = "memanto_request_id"


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-ID when it is sane, else a new one; fixed for the request."""
    state = scope.setdefault("state", {})  # type: ignore[typeddict-item]
    rid = state.get(_STATE_KEY)
    if rid is None:
        rid = (
            next(
                (
                    v.decode()
                    for k, v in scope.get("headers", ())
                    if k == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(v)
                ),
                None,
            )
            or uuid.uuid4().hex
        )
        state[_STATE_KEY] = rid
    return rid


async def add_request_id(message: Message, scope: Scope) -> None:
    """`before_send` hook: runs for every response, routed or not."""
    if message["type"] == "http.response.start":
        headers = list(message.get("headers", ()))
        headers.append((REQUEST_ID_HEADER, request_id_of(scope).encode()))
        message["headers"] = headers  # type: ignore[typeddict-unknown-key]


class AccessLogMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - started
            state = scope.get("state", {})
            method, route = scope.get("method", "-"), scope.get("path_template", "-")
            observe_request(method, route, status, seconds)
            access_log.info(
                "%s %s %s",
                method,
                route,
                status,
                extra={
                    "request_id": request_id_of(scope),
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "owner_id": state.get("owner_id"),
                    "agent_id": scope.get("path_params", {}).get("agent_id") or state.get("agent_id"),
                },
            )
