"""create_app(): wiring only — routes, dependencies, error handlers, lifespan."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State

from memanto_server.agents.controller import AgentController
from memanto_server.body import StrictJsonRequest
from memanto_server.compat.health import MemantoHealthController
from memanto_server.compat.moorcheh import moorcheh_router
from memanto_server.http import ListEveryMethod, OwnRouter
from memanto_server.lifespan import backends
from memanto_server.mcp.endpoint import mcp_route, mcp_session_manager
from memanto_server.memories.controller import MemoryController
from memanto_server.memories.lifecycle_controller import LifecycleController
from memanto_server.openapi import openapi_config
from memanto_server.ops.health import HealthController
from memanto_server.ops.logging import configure_logging, log_writer
from memanto_server.ops.metrics import metrics_endpoint
from memanto_server.ops.ratelimit import add_rate_limit_headers, enforce_rate_limit, rate_limiter
from memanto_server.ops.request_context import AccessLogMiddleware
from memanto_server.problems import EXCEPTION_HANDLERS
from memanto_server.sessions.controller import SessionController
from memanto_server.settings import Settings

API_PREFIX = "/api/v2"


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    configure_logging(settings)
    api = OwnRouter(
        path=API_PREFIX,
        route_handlers=[SessionController, AgentController, MemoryController, LifecycleController],
        # Litestar copies the route handler for every guard call: no guard when there is no limit.
        guards=[enforce_rate_limit] if settings.rate_limit else [],
    )
    app = Litestar(
        route_handlers=[
            api,
            HealthController,
            metrics_endpoint,
            MemantoHealthController,
            moorcheh_router(settings),
            mcp_route(settings),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        # The log writer first: it stops last, after everything the others log on their way out.
        lifespan=[log_writer, backends, rate_limiter, mcp_session_manager],
        # The rate-limit hook only with a limit: it has nothing to add without one, and a hook
        # costs every response.
        before_send=[add_rate_limit_headers] if settings.rate_limit else [],
        request_class=StrictJsonRequest,
        request_max_body_size=settings.max_body_bytes,
        state=State({"settings": settings}),
        openapi_config=openapi_config(),
        logging_config=None,
        debug=False,
    )
    # Around the router rather than in `middleware=` (which Litestar runs per route): the
    # access line, the request metrics and the request id cover unrouted 404s and 405s too.
    app.asgi_handler = AccessLogMiddleware(app.asgi_handler)
    # Outside it, so that an OPTIONS answer's headers keep their order (the request id before `Allow`).
    app.asgi_handler = ListEveryMethod(app.asgi_handler)
    return app
