"""Service routes: liveness and readiness (no credentials)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from memanto_server.errors import OUTAGE_ERRORS


class Liveness(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct, omit_defaults=True):
    status: str
    checks: dict[str, str]
    # Memories waiting for their embedding, as last counted (absent with embeddings off). For
    # information only: they are found by full text meanwhile, so it never makes this fail.
    embedding_backlog: int | None = None


async def _check(probe: Any, timeout: float) -> str:
    try:
        await asyncio.wait_for(probe, timeout)
    except (TimeoutError, *OUTAGE_ERRORS) as exc:
        return f"unavailable ({type(exc).__name__})"
    return "ok"


class HealthController(Controller):
    path = "/health"
    tags = ["service"]

    @get("/live", summary="The process is up")
    async def live(self) -> Liveness:
        return Liveness(status="ok")

    @get(
        "/ready",
        summary="Postgres and Redis answer (503 when one does not); the embedding backlog, for information only",
        responses={503: ResponseSpec(Readiness, description="A backend does not answer", generate_examples=False)},
    )
    async def ready(self, state: State) -> Response[Readiness]:
        services = state.services
        timeout = state.settings.health_timeout
        postgres, redis = await asyncio.gather(
            _check(services.db.fetchval("SELECT 1"), timeout),
            _check(services.redis.ping(), timeout),
        )
        checks = {"postgres": postgres, "redis": redis}
        ok = postgres == "ok" and redis == "ok"
        monitor = services.embedding_backlog
        headers = {} if ok else {"Retry-After": str(state.settings.retry_after_seconds)}
        return Response(
            Readiness(
                status="ok" if ok else "unavailable",
                checks=checks,
                embedding_backlog=None if monitor is None else monitor.last,
            ),
            status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE,
            headers=headers,
        )
