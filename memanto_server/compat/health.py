"""`GET /health`, `/ready` and `/live` as MEMANTO's bundled server answers them (no credentials).

`memanto status` and scripts written against that server read `status == "healthy"`,
`version` and `moorcheh_connected` (here: the memory store, Postgres and Redis, answers).
A backend that does not answer is a 503 with `Retry-After`, as everywhere in this service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from memanto_server.errors import OUTAGE_ERRORS
from memanto_server.lib.version import VERSION

SERVICE_NAME = "memanto-server"


class MemantoHealth(msgspec.Struct, kw_only=True):
    status: str  # "healthy" or "unhealthy"
    service: str
    version: str
    moorcheh_connected: bool  # the memory store answers (Postgres and Redis here)
    checks: dict[str, str]


class MemantoReadiness(msgspec.Struct, kw_only=True):
    status: str  # "ready" or "not_ready"
    checks: dict[str, str]


class MemantoLiveness(msgspec.Struct, kw_only=True):
    status: str  # "alive"


async def _probe(check: Awaitable[Any], timeout: float) -> str:
    try:
        await asyncio.wait_for(check, timeout)
    except OUTAGE_ERRORS as exc:
        return f"unavailable ({type(exc).__name__})"
    return "ok"


async def _checks(state: State) -> tuple[bool, dict[str, str], dict[str, str]]:
    """Whether both backends answer, their checks, and the headers of the answer."""
    services, timeout = state.services, state.settings.health_timeout
    postgres, redis = await asyncio.gather(
        _probe(services.db.fetchval("SELECT 1"), timeout), _probe(services.redis.ping(), timeout)
    )
    ok = postgres == redis == "ok"
    headers = {} if ok else {"Retry-After": str(state.settings.retry_after_seconds)}
    return ok, {"postgres": postgres, "redis": redis}, headers


class MemantoHealthController(Controller):
    tags = ["service"]

    @get(
        "/health",
        summary="MEMANTO's health check: healthy when the memory store answers",
        responses={503: ResponseSpec(MemantoHealth, description="A backend does not answer", generate_examples=False)},
    )
    async def health(self, state: State) -> Response[MemantoHealth]:
        ok, checks, headers = await _checks(state)
        body = MemantoHealth(
            status="healthy" if ok else "unhealthy",
            service=SERVICE_NAME,
            version=VERSION,
            moorcheh_connected=ok,
            checks=checks,
        )
        return Response(body, status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE, headers=headers)

    @get(
        "/ready",
        summary="MEMANTO's readiness check (as /health/ready)",
        responses={
            503: ResponseSpec(MemantoReadiness, description="A backend does not answer", generate_examples=False)
        },
    )
    async def ready(self, state: State) -> Response[MemantoReadiness]:
        ok, checks, headers = await _checks(state)
        body = MemantoReadiness(status="ready" if ok else "not_ready", checks=checks)
        return Response(body, status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE, headers=headers)

    @get("/live", summary="MEMANTO's liveness check (as /health/live)")
    async def live(self) -> MemantoLiveness:
        return MemantoLiveness(status="alive")
