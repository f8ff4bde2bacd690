"""Request ids on every response, and one access line and one metrics sample per request.

The request path only records what happened, one tuple handed to the log writer; the
writer's thread turns it into the access line and the request metrics (`observe`). A
scrape of `/metrics` first has the writer catch up, so it counts every request answered
before it.

`AccessLogMiddleware` is the outermost layer of the app (around Litestar's router), so
it sees every request, routed or not (an unknown path's 404 and a 405 included), and the
status that really left.

A client that disconnects before its response is recorded as 499, nginx's word for a
client closed request, not as the status the app then sent into the void: a 500 when
the app was reading the body (Litestar's answer to `http.disconnect`), or a 201 for a
write that completed after the client gave up. It is not the server's error either way.
ASGI tells an app of a disconnect only when it reads; uvicorn's request cycle (the
object whose method `receive` is) also knows when the connection was lost before the
response completed, and that covers a request the client left while it waited.
"""

from __future__ import annotations

import random
import re
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from memanto_server.ops import metrics
from memanto_server.ops.logging import LOG_WRITER, AccessEntry

REQUEST_ID_HEADER = b"x-request-id"
_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_STATE_KEY = "memanto_request_id"
CLIENT_CLOSED_REQUEST = 499
# Methods counted under their own name; any other token a client sends is counted as "other",
# so that no client can add metric series at will.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def new_request_id() -> str:
    """32 random hex digits, as nginx's `$request_id`. A correlation id, not a secret: drawn from
    `random` (seeded from the system, reseeded in a forked child) rather than with a system call
    per request (`os.urandom`, `uuid4`)."""
    return random.getrandbits(128).to_bytes(16, "big").hex()


def observe(entries: list[AccessEntry]) -> None:
    """The request metrics of finished requests (on the log writer's thread, a batch at a time)."""
    metrics.observe_requests(
        (method if method in _KNOWN_METHODS else "other", route, status, seconds)
        for _, _, method, route, status, seconds, _, _ in entries
    )


LOG_WRITER.observers.append(observe)
metrics.BEFORE_SCRAPE.append(LOG_WRITER.flush)


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-ID when it is sane, else a new one; fixed for the request."""
    state = scope.setdefault("state", {})  # type: ignore[typeddict-item]
    rid = state.get(_STATE_KEY)
    if rid is None:
        rid = next(
            (v.decode() for k, v in scope.get("headers", ()) if k == REQUEST_ID_HEADER and _VALID_REQUEST_ID.match(v)),
            None,
        )
        state[_STATE_KEY] = rid = rid or new_request_id()
    return rid  # type: ignore[no-any-return]


class AccessLogMiddleware:
    """ASGI wrapper: the request id header on the response, the metrics sample, the access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope)
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        status = 500  # unless a response starts: the app raised past its own handlers
        responded = gone = False
        server_cycle = getattr(receive, "__self__", None)

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message["headers"] = [*message.get("headers", ()), id_header]  # type: ignore[typeddict-unknown-key]
            await send(message)

        async def receive_watching() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect" and not responded:
                gone = True
            return message  # type: ignore[return-value]

        try:
            await self.app(scope, receive_watching, send_with_id)  # type: ignore[arg-type]
        finally:
            seconds = time.perf_counter() - started
            if gone or getattr(server_cycle, "disconnected", False):
                status = CLIENT_CLOSED_REQUEST
            state = scope["state"]  # type: ignore[typeddict-item]
            path_params = scope.get("path_params")
            agent_id = (path_params.get("agent_id") if path_params else None) or state.get("agent_id")
            route = scope.get("path_template") or "-"  # type: ignore[attr-defined]
            LOG_WRITER.put(
                (time.time(), request_id, scope["method"], route, status, seconds, state.get("owner_id"), agent_id)
            )
