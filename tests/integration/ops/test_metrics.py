"""Prometheus metrics at GET /metrics: what a session's life cycle counts, in one process and across workers."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from memanto_server.main import create_app
from memanto_server.settings import Settings
from tests.helpers.http import API, activate, token_headers
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import free_port, running_server, settings_env

ACTIVATE_ROUTE = API + "/agents/{agent_id}/activate"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: Any) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return parse(response.text)


async def test_metrics_need_no_credentials_and_are_documented(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "# TYPE memanto_sessions_activated_total counter" in response.text
    assert "# TYPE memanto_http_request_duration_seconds histogram" in response.text
    schema = (await client.get("/schema/openapi.json")).json()
    scrape = schema["paths"]["/metrics"]["get"]
    assert "security" not in scrape
    assert list(scrape["responses"]["200"]["content"]) == ["text/plain; version=0.0.4; charset=utf-8"]


async def test_a_session_life_cycle_is_counted(client: AsyncTestClient[Any], owner: OwnerKey) -> None:
    before = await scrape(client)
    agent = unique_agent("metrics")
    first = await activate(client, owner.key, agent)
    headers = token_headers(first["session_token"], owner.key)
    remembered = await client.post(
        f"{API}/agents/{agent}/remember", params={"content": "the kettle is in the left cupboard"}, headers=headers
    )
    assert remembered.status_code == 201, remembered.text
    replay_headers = headers | {"Idempotency-Key": "metrics-replay"}
    for _ in range(2):  # stored once, whatever the retries
        replayed = await client.post(
            f"{API}/agents/{agent}/remember", params={"content": "tea is in the tin"}, headers=replay_headers
        )
        assert replayed.status_code in (200, 201), replayed.text
    batch = await client.post(
        f"{API}/agents/{agent}/batch-remember",
        json={"memories": [{"content": "the kettle whistles"}, {"content": "the kettle is blue"}]},
        headers=headers,
    )
    assert batch.status_code == 201, batch.text
    recalled = await client.post(f"{API}/agents/{agent}/recall", params={"query": "kettle"}, headers=headers)
    assert recalled.status_code == 200, recalled.text
    found = recalled.json()["count"]
    assert found >= 1

    second = await activate(client, owner.key, agent)  # supersedes the first
    ended = await client.post(
        f"{API}/agents/{agent}/deactivate", headers=token_headers(second["session_token"], owner.key)
    )
    assert ended.status_code == 200, ended.text

    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("memanto_sessions_activated_total") == 2
    assert delta("memanto_sessions_ended_total", reason="superseded") == 1
    assert delta("memanto_sessions_ended_total", reason="deactivated") == 1
    assert delta("memanto_memories_stored_total") == 4
    assert delta("memanto_recall_results_total") == found
    request = {"method": "POST", "route": ACTIVATE_ROUTE, "status": "201"}
    assert delta("memanto_http_requests_total", **request) == 2
    assert delta("memanto_http_request_duration_seconds_count", **request) == 2
    assert delta("memanto_http_request_duration_seconds_bucket", le="+Inf", **request) == 2
    assert value(after, "memanto_http_request_duration_seconds_sum", **request) > 0
    # Labelled by route template: the agent id never becomes a label value.
    assert not any(agent in str(labels) for _, labels in after)


async def test_expired_sessions_are_counted(settings: Settings, owner: OwnerKey, db: Any) -> None:
    quick_sweeps = msgspec.structs.replace(settings, sweep_interval_seconds=0.2)
    async with AsyncTestClient(app=create_app(quick_sweeps)) as client:
        before = await scrape(client)
        session = await activate(client, owner.key, unique_agent("expiring"), duration_hours=0.0003)  # ~1 s
        for _ in range(100):  # the app's own sweeper records the expiry
            await asyncio.sleep(0.1)
            reason = await db.fetchval("SELECT end_reason FROM sessions WHERE session_id = $1", session["session_id"])
            if reason is not None:
                break
        after = await scrape(client)
    assert reason == "expired"
    expired = value(after, "memanto_sessions_ended_total", reason="expired")
    assert expired - value(before, "memanto_sessions_ended_total", reason="expired") >= 1


async def test_dependency_errors_are_counted(settings: Settings, owner: OwnerKey) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/memanto"  # nothing listens there
    app = create_app(msgspec.structs.replace(settings, database_url=nowhere, db_connect_timeout=1.0))
    async with AsyncTestClient(app=app) as client:
        before = await scrape(client)
        response = await client.get(f"{API}/agents", headers=owner.headers)
        assert response.status_code == 503, response.text
        after = await scrape(client)
    total = sum(v for (name, _), v in after.items() if name == "memanto_dependency_errors_total")
    total_before = sum(v for (name, _), v in before.items() if name == "memanto_dependency_errors_total")
    assert total - total_before == 1


# With several uvicorn workers: every scrape, whichever worker answers it, sums all workers.


def fresh_connection_client(base_url: str) -> httpx.AsyncClient:
    """No keep-alive: each request is a new connection, which any worker may accept."""
    return httpx.AsyncClient(
        base_url=base_url, timeout=15, limits=httpx.Limits(max_keepalive_connections=0), headers={"Connection": "close"}
    )


def scrapes_per_worker(metrics_dir: Path) -> list[float]:
    """How many scrapes each worker answered, read from its own multiprocess file."""
    return [
        sum(
            sample.value
            for family in MultiProcessCollector.merge([str(path)])
            for sample in family.samples
            if sample.name == "memanto_http_requests_total" and sample.labels.get("route") == "/metrics"
        )
        for path in metrics_dir.glob("counter_*.db")
    ]


async def activate_and_scrape(base_url: str, owner: OwnerKey, activations: int, metrics_dir: Path | None) -> int:
    """Activate sessions, then scrape in rounds (until both workers answered some); return the scrapes.

    Each worker counts its requests from its log writer's thread, within one writer interval
    (50 ms) of answering them; a scrape has its own worker catch up first, but may see another
    worker's last requests that much later. So: once a scrape has seen every activation, every
    scrape, whichever worker answers it, sees all of them."""
    async with fresh_connection_client(base_url) as client:
        await asyncio.gather(*(activate(client, owner.key, unique_agent("workers")) for _ in range(activations)))
        request = {"method": "POST", "route": ACTIVATE_ROUTE, "status": "201"}
        for _ in range(100):
            if value(await scrape(client), "memanto_http_requests_total", **request) == activations:
                break
            await asyncio.sleep(0.02)
        scraped = 0
        for _ in range(30):
            rounds = await asyncio.gather(*(scrape(client) for _ in range(8)))
            for samples in rounds:
                assert value(samples, "memanto_sessions_activated_total") == activations
                assert value(samples, "memanto_http_requests_total", **request) == activations
            scraped += len(rounds)
            if metrics_dir is None or len([n for n in scrapes_per_worker(metrics_dir) if n > 0]) >= 2:
                break
        return scraped


@pytest.mark.slow
async def test_counters_add_up_across_two_workers(settings: Settings, owner: OwnerKey, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale")  # an earlier run's file: cleared at start
    env = settings_env(settings) | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with running_server(env, workers=2) as base_url:
        await activate_and_scrape(base_url, owner, 20, metrics_dir)
        answered = scrapes_per_worker(metrics_dir)
    assert not (metrics_dir / "counter_999999.db").exists()
    # Both workers answered scrapes, and every answer had all 20 activations, whichever worker served them.
    assert len([n for n in answered if n > 0]) == 2, answered


@pytest.mark.slow
async def test_serve_sets_up_multiprocess_metrics_by_itself(
    settings: Settings, owner: OwnerKey, tmp_path: Path
) -> None:
    env = settings_env(settings)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "server.log"
    with running_server(env, workers=2, log_path=log_path) as base_url:
        found = re.search(r"share metrics through (\S+)", log_path.read_text())
        assert found, log_path.read_text()
        metrics_dir = Path(found.group(1))
        await activate_and_scrape(base_url, owner, 12, metrics_dir)
        answered = scrapes_per_worker(metrics_dir)
    assert len([n for n in answered if n > 0]) == 2, answered
    assert not metrics_dir.exists()  # removed when the server stopped
