"""`GET /health`, `/ready` and `/live` as MEMANTO's bundled server answers them, outages included."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from memanto_server.main import create_app
from memanto_server.settings import Settings
from tests.helpers.processes import free_port


async def test_health_has_memantos_fields(client: Any) -> None:
    health = await client.get("/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "healthy"
    assert body["service"] == "memanto-server"
    assert body["version"] == "0.1.0"
    assert body["moorcheh_connected"] is True
    assert body["checks"] == {"postgres": "ok", "redis": "ok"}
    ready = await client.get("/ready")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    live = await client.get("/live")
    assert (live.status_code, live.json()) == (200, {"status": "alive"})


async def test_health_says_unhealthy_with_503_and_retry_after_in_an_outage(settings: Settings) -> None:
    down = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", health_timeout=0.5)
    async with AsyncTestClient(app=create_app(down)) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
        live = await client.get("/live")
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "unhealthy"
    assert health.json()["moorcheh_connected"] is False
    assert health.json()["checks"]["postgres"] == "ok"
    assert health.json()["checks"]["redis"].startswith("unavailable")
    assert int(health.headers["Retry-After"]) > 0
    assert (ready.status_code, ready.json()["status"]) == (503, "not_ready")
    assert live.status_code == 200
