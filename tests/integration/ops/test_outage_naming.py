"""An outage names its backend: in the 503's detail, in the log line and in the metric label.

A server process whose Postgres is reached through a TCP proxy of the test's own (which
the test blocks) and whose Redis is a private `redis-server` (which the test stops). A
refused or reset connection while acquiring a pooled connection is a bare `OSError` from
asyncpg: it is still Postgres's outage, never "a backend" or `backend="other"`.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memanto_server.settings import Settings
from tests.helpers.http import API, activate, assert_unavailable, token_headers
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import private_redis, running_server, settings_env
from tests.helpers.proxy import tcp_proxy, through, upstream_of

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(15.0)


async def dependency_errors(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    return {
        sample.labels["backend"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "memanto_dependency_errors_total"
    }


async def test_each_outage_is_named_for_its_backend(
    settings: Settings, owner: OwnerKey, database_url: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "server.log"
    with private_redis() as own_redis, tcp_proxy(*upstream_of(database_url)) as postgres:
        env = settings_env(settings)
        env |= {
            "MEMANTO_DATABASE_URL": through(database_url, postgres),
            "MEMANTO_REDIS_URL": own_redis.url,
            "MEMANTO_REDIS_TIMEOUT": "0.5",
            "MEMANTO_DB_CONNECT_TIMEOUT": "1",
            "MEMANTO_DB_POOL_MIN": "0",
        }
        postgres.block()  # down from the start: no pooled connection was ever made
        with running_server(env, log_path=log_path) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
                response = await client.get(f"{API}/agents", headers=owner.headers)
                assert_unavailable(response)
                assert response.json()["detail"] == "Postgres is unavailable; retry shortly"
                assert await dependency_errors(client) == {"postgres": 1.0}

                postgres.unblock()
                session = await activate(client, owner.key, unique_agent("named"))
                headers = token_headers(session["session_token"])
                postgres.block()  # down with connections in the pool: they break under the statement
                response = await client.post(
                    f"{API}/agents/{session['agent_id']}/remember", json={"content": "x"}, headers=headers
                )
                assert_unavailable(response)
                assert response.json()["detail"] == "Postgres is unavailable; retry shortly"
                postgres.unblock()

                own_redis.stop()
                response = await client.get(f"{API}/session/current", headers=headers)
                assert_unavailable(response)
                assert response.json()["detail"] == "Redis is unavailable; retry shortly"
                assert await dependency_errors(client) == {"postgres": 2.0, "redis": 1.0}
    log = log_path.read_text()
    assert log.count("dependency unavailable: Postgres") == 2, log
    assert log.count("dependency unavailable: Redis") == 1, log
    assert "a backend" not in log
    assert "Traceback" not in log, log
