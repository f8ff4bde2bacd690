"""The `/mcp` route: the owner's API key checked by a guard, then the SDK's session manager.

A Litestar guard checks the key before the SDK sees the request (no key or a wrong one: 401
problem details, as on every route). The SDK (`server.py`) is imported, and its session manager
started, at the first `/mcp` request rather than with the app: importing it costs about as much
as the rest of the app, which a process that never serves MCP (a test's server, a worker) should
not pay. The import runs in a thread, so the event loop goes on serving meanwhile; the first
MCP request waits for it (about a second), later ones do not.

Stateless: every request stands alone (no `Mcp-Session-Id` to keep), so any instance behind
the load balancer can answer it. DNS-rebinding protection (a check of the Host header) is off:
it guards servers that trust whoever reaches them, while every request here carries the owner's
API key, which a rebound page does not have; and behind a load balancer the Host header is the
public name, not a name the app could know.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, asgi
from litestar.connection import ASGIConnection
from litestar.handlers import ASGIRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Receive, Scope, Send

from memanto_server.auth.credentials import provide_owner
from memanto_server.mcp.tools import OWNER_STATE
from memanto_server.ops.ratelimit import enforce_rate_limit
from memanto_server.settings import Settings

MCP_PATH = "/mcp"
SERVER_MODULE = "memanto_server.mcp.server"


class LazySessionManager:
    """The SDK's session manager, started at first use in a task of its own and stopped with the app."""

    def __init__(self, app: Litestar) -> None:
        self._app = app
        self._starting: asyncio.Task[Any] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def manager(self) -> Any:
        """The running manager; the first caller starts it, the others wait for the same start (a
        caller that goes away does not cancel it), and a start that failed is tried again."""
        starting = self._starting
        if starting is None or (starting.done() and (starting.cancelled() or starting.exception() is not None)):
            starting = self._starting = asyncio.create_task(self._start(), name="mcp-start")
        return await asyncio.shield(starting)

    async def _start(self) -> Any:
        server = await asyncio.to_thread(importlib.import_module, SERVER_MODULE)
        started: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def run() -> None:
            # The manager's task group is entered and left in this one task, as anyio requires.
            try:
                async with server.running_session_manager(
                    lambda: self._app.state.services, self._app.state.settings
                ) as manager:
                    started.set_result(manager)
                    await self._stop.wait()
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                raise

        self._task = asyncio.create_task(run(), name="mcp-session-manager")
        return await started

    async def close(self) -> None:
        self._stop.set()
        if self._starting is not None and not self._starting.done():
            await asyncio.wait([self._starting])
        if self._task is not None:
            await asyncio.wait([self._task])


async def require_owner(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the owner's API key (`Authorization: Bearer` or `X-Api-Key`), else a 401 problem."""
    owner = await provide_owner(connection)  # type: ignore[arg-type]
    connection.scope.setdefault("state", {})[OWNER_STATE] = owner  # type: ignore[typeddict-item]


def mcp_route(settings: Settings) -> ASGIRouteHandler:
    """The `/mcp` route; rate-limited per owner like `/api/v2` when a limit is set."""
    guards = [require_owner, enforce_rate_limit] if settings.rate_limit else [require_owner]

    @asgi(MCP_PATH, is_mount=True, copy_scope=True, guards=guards)
    async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        lazy: LazySessionManager = scope["app"].state.mcp
        manager = await lazy.manager()
        await manager.handle_request(scope, receive, send)

    return mcp_endpoint


@asynccontextmanager
async def mcp_session_manager(app: Litestar) -> AsyncIterator[None]:
    """Lifespan: `app.state.mcp`, whose session manager starts at the first request and stops here."""
    if logging.getLogger().level > logging.DEBUG:
        # The SDK says at INFO that it ends each stateless request's transport.
        logging.getLogger("mcp").setLevel(logging.WARNING)
    lazy = LazySessionManager(app)
    app.state.mcp = lazy
    try:
        yield
    finally:
        await lazy.close()
