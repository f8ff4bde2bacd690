"""create_app(): wiring only — routes, dependencies, error handlers, lifespan."""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from memanto_server.agents.controller import AgentController
from memanto_server.lifespan import backends
from memanto_server.memories.controller import MemoryController
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
    api = Router(
        path=API_PREFIX,
        route_handlers=[SessionController, AgentController, MemoryController],
        security=[{"ApiKey": []}, {"SessionToken": []}],
        # Litestar copies the route handler for every guard call: no guard when there is no limit.
        guards=[enforce_rate_limit] if settings.rate_limit else [],
    )
    app = Litestar(
        route_handlers=[api, HealthController, metrics_endpoint],
        exception_handlers=EXCEPTION_HANDLERS,
        # The log writer first: it stops last, after everything the other two log on their way out.
        lifespan=[log_writer, backends, rate_limiter],
        # Only with a limit: the hook has nothing to add without one, and a hook costs every response.
        before_send=[add_rate_limit_headers] if settings.rate_limit else [],
        request_max_body_size=settings.max_body_bytes,
        state=State({"settings": settings}),
        openapi_config=OpenAPIConfig(
            title="Memanto server",
            version="2.0.0",
            description=(
                "Sessions and memories for AI agents (MEMANTO session API v2). "
                "Errors are RFC 9457 problem details with a stable `code`."
            ),
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
            components=Components(
                security_schemes={
                    "ApiKey": SecurityScheme(type="http", scheme="bearer", description="`mk_…` API key"),
                    "SessionToken": SecurityScheme(
                        type="apiKey",
                        name="X-Session-Token",
                        security_scheme_in="header",
                        description="Session JWT from activate",
                    ),
                }
            ),
        ),
        logging_config=None,
        debug=False,
    )
    # Around the router rather than in `middleware=` (which Litestar runs per route): the
    # access line, the request metrics and the request id cover unrouted 404s and 405s too.
    app.asgi_handler = AccessLogMiddleware(app.asgi_handler)
    return app
