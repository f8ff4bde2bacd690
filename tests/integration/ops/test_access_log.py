"""The access log: one line per request, with the documented fields, never a credential.

In JSON (MEMANTO_LOG_FORMAT=json, or production) each line is one object; in text, one
line whatever a client puts in a path. The lines are written off the event loop, in
batches: under load every request still has exactly one line, and at SIGTERM every
request that was answered has its line in the output before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import signal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from memanto_server.main import create_app
from memanto_server.settings import Settings
from tests.helpers.http import API, activate, token_headers
from tests.helpers.logs import (
    ACCESS_FIELDS,
    access_entries,
    assert_no_credentials,
    by_request_id,
    json_entries,
)
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.postgres import agent_row_locked, wait_until_blocked
from tests.helpers.processes import ServerProcess, settings_env

REMEMBER_ROUTE = API + "/agents/{agent_id}/remember"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def counted(metrics: str, series: str) -> float:
    found = [line.rpartition(" ")[2] for line in metrics.splitlines() if line.startswith(series + " ")]
    return float(found[0]) if found else 0.0


def assert_documented(entry: dict[str, Any]) -> None:
    assert list(entry) == ACCESS_FIELDS, entry
    assert ISO_Z.match(entry["ts"]), entry
    assert entry["level"] == "info"
    assert entry["msg"] == f"{entry['method']} {entry['route']} {entry['status']}"
    assert isinstance(entry["status"], int)
    assert isinstance(entry["duration_ms"], int | float)
    assert entry["duration_ms"] >= 0


async def test_json_access_lines_carry_the_request_fields(
    settings: Settings, owner: OwnerKey, capfd: pytest.CaptureFixture[str]
) -> None:
    agent = unique_agent("jsonlog")
    app = create_app(msgspec.structs.replace(settings, log_format="json"))
    async with AsyncTestClient(app=app) as client:
        session = await activate(client, owner.key, agent)
        response = await client.get(
            f"{API}/session/current",
            headers=token_headers(session["session_token"], owner.key) | {"X-Request-ID": "req-json-1"},
        )
        assert response.status_code == 200, response.text
    err = capfd.readouterr().err  # the app's lifespan has ended: its log writer wrote everything
    access = access_entries(err)
    current = next(e for e in access if e.get("request_id") == "req-json-1")
    assert_documented(current)
    assert current["method"] == "GET"
    assert current["route"] == f"{API}/session/current"
    assert current["status"] == 200
    assert current["owner_id"] == owner.owner_id
    assert current["agent_id"] == agent
    activated = next(e for e in access if e["route"] == f"{API}/agents/{{agent_id}}/activate")
    assert activated["status"] == 201
    assert activated["agent_id"] == agent
    assert_no_credentials(err, [owner.key, session["session_token"]])


async def test_unrouted_requests_have_their_line_and_metric(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """Litestar runs `middleware=` per route; the access log wraps the router, so a path that
    matches no route, or a method no route takes, is logged and counted too."""
    app = create_app(msgspec.structs.replace(settings, log_format="json"))
    async with AsyncTestClient(app=app) as client:
        before = (await client.get("/metrics")).text
        missing = await client.get(f"{API}/no-such-route", headers={"X-Request-ID": "unrouted-404"})
        assert missing.status_code == 404
        brewed = await client.request("BREW", "/health/live", headers={"X-Request-ID": "unrouted-brew"})
        assert brewed.status_code == 405
        metrics = (await client.get("/metrics")).text
    lines = by_request_id(access_entries(capfd.readouterr().err))
    for request_id, method, status in (("unrouted-404", "GET", 404), ("unrouted-brew", "BREW", 405)):
        [entry] = lines[request_id]
        assert_documented(entry)
        assert (entry["method"], entry["status"]) == (method, status)
        assert entry["route"] == "-"  # never the raw path: it may carry anything
    unrouted = 'memanto_http_requests_total{{method="{}",route="-",status="{}"}}'
    assert counted(metrics, unrouted.format("GET", 404)) - counted(before, unrouted.format("GET", 404)) == 1
    # A method no route knows is counted as "other": no client adds series at will.
    assert counted(metrics, unrouted.format("other", 405)) - counted(before, unrouted.format("other", 405)) == 1
    assert 'method="BREW"' not in metrics


async def test_text_access_line_escapes_control_characters(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    """An agent id with `%0A` in an unauthenticated request cannot forge a line of its own."""
    forged = "2026-01-01 00:00:00,000 INFO    memanto.access: POST admin 200"
    agent = "evil%0D%0A" + forged.replace(" ", "%20") + "%1B%5B31m"
    app = create_app(msgspec.structs.replace(settings, log_format="text"))
    async with AsyncTestClient(app=app) as client:
        response = await client.post(f"{API}/agents/{agent}/remember", json={"content": "x"})
        assert response.status_code == 401, response.text
    err = capfd.readouterr().err
    access = [line for line in err.splitlines() if " memanto.access: POST " in line]
    assert len(access) == 1, err
    assert "agent_id=evil\\r\\n2026-01-01 00:00:00,000 INFO    memanto.access: POST admin 200\\x1b[31m" in access[0]
    assert not any(line.startswith("2026-01-01") for line in err.splitlines()), err
    assert "\x1b" not in err
    # Every line starts a record (a timestamp at the margin) or continues one, indented.
    record_start = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
    for line in err.splitlines():
        assert record_start.match(line) or line.startswith("    "), line


def test_uvicorn_does_not_format_an_access_line_of_its_own(settings: Settings) -> None:
    create_app(settings)  # configures logging
    # uvicorn builds its access line (path, query string) for every response whenever this
    # is true, whether or not the logger is disabled; ours comes from AccessLogMiddleware.
    assert logging.getLogger("uvicorn.access").hasHandlers() is False
    assert logging.getLogger().hasHandlers()


# With a real server: many requests at once, and a SIGTERM in the middle of them.


def json_server(settings: Settings, log_path: Path, **kwargs: Any) -> ServerProcess:
    env = settings_env(settings) | {"MEMANTO_ENV": "production", "MEMANTO_LOG_FORMAT": "json"}
    return ServerProcess(env, log_path=log_path, **kwargs)


@pytest.mark.slow
async def test_one_line_per_request_under_concurrent_load_and_never_a_credential(
    settings: Settings, owner: OwnerKey, tmp_path: Path
) -> None:
    agent = unique_agent("loadlog")
    log_path = tmp_path / "server.log"
    server = json_server(settings, log_path)
    server.start()
    try:
        server.wait_ready()
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as client:
            session = await activate(client, owner.key, agent)
            token = session["session_token"]
            live = token_headers(token, owner.key)
            # Each kind: (method, path, extra request arguments, expected status); credentials
            # are sent where they belong and where they do not (a query string, a path).
            kinds: list[tuple[str, str, dict[str, Any], int]] = [
                ("GET", "/health/live", {}, 200),
                ("GET", f"{API}/session/current", {"headers": live}, 200),
                ("POST", f"{API}/agents/{agent}/remember", {"headers": live, "json": {"content": "n"}}, 201),
                ("GET", f"{API}/session/current", {"params": {"api_key": owner.key, "token": token}}, 401),
                ("POST", f"{API}/agents/{owner.key}/remember", {"json": {"content": "n"}}, 401),
                ("GET", f"{API}/agents/{token}", {"headers": {"Authorization": f"Bearer {owner.key}"}}, 422),
                ("GET", f"{API}/no-such-route/{owner.key}", {}, 404),
            ]
            sent = [(f"load-{n}-{secrets.token_hex(4)}", kinds[n % len(kinds)]) for n in range(210)]

            async def one(request_id: str, kind: tuple[str, str, dict[str, Any], int]) -> int:
                method, path, arguments, _ = kind
                headers = {**arguments.get("headers", {}), "X-Request-ID": request_id}
                response = await client.request(method, path, **{**arguments, "headers": headers})
                return response.status_code

            statuses = await asyncio.gather(*(one(request_id, kind) for request_id, kind in sent))
            # A client may name its request after its key: it is still never written.
            echoed = await client.get("/health/live", headers={"X-Request-ID": owner.key})
            assert echoed.status_code == 200
    finally:
        server.stop()
    assert statuses == [kind[3] for _, kind in sent]

    log = log_path.read_text()
    lines = by_request_id(access_entries(log))
    for (request_id, (method, _, _, status)), answered in zip(sent, statuses, strict=True):
        entries = lines.pop(request_id, [])
        assert len(entries) == 1, (request_id, entries)
        assert_documented(entries[0])
        assert (entries[0]["method"], entries[0]["status"]) == (method, answered), entries[0]
        assert status == answered
    # The rest: the readiness checks, the activation, the request named after the key (redacted).
    rest = [entry["route"] for entries in lines.values() for entry in entries]
    assert rest.count(API + "/agents/{agent_id}/activate") == 1, rest
    assert set(rest) == {"/health/live", API + "/agents/{agent_id}/activate"}, rest
    assert [entry["route"] for entry in lines["[redacted]"]] == ["/health/live"]
    assert all(isinstance(entry, dict) for entry in json_entries(log))
    assert_no_credentials(log, [owner.key, token, token.split(".")[2]])


@pytest.mark.slow
async def test_every_answered_request_has_its_line_after_sigterm(
    settings: Settings, database_url: str, owner: OwnerKey, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    """SIGTERM while requests are in flight: uvicorn finishes them, and the log writer writes
    every line, the last ones included, before the process exits."""
    agent = unique_agent("sigtermlog")
    log_path = tmp_path / "server.log"
    # The held `remember` waits on a row lock until the load is under way: a statement timeout
    # longer than that wait on a loaded machine, so that it ends in 201 and not in a 503.
    server = json_server(msgspec.structs.replace(settings, db_statement_timeout=120.0), log_path, graceful_timeout=20)
    server.start()
    answered: dict[str, int] = {}
    stop_clients = asyncio.Event()

    async def keep_asking(number: int) -> None:
        """One connection of its own, one request after another, until the server goes away."""
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as own:
            for sequence in range(10_000):
                if stop_clients.is_set():
                    return
                request_id = f"sigterm-{number}-{sequence}"
                try:
                    response = await own.get("/health/live", headers={"X-Request-ID": request_id})
                except httpx.TransportError:  # refused or closed: shutting down
                    return
                answered[request_id] = response.status_code

    try:
        server.wait_ready()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            session = await activate(client, owner.key, agent)
            async with agent_row_locked(database_url, owner.owner_id, agent) as holder:
                held = asyncio.create_task(
                    client.post(
                        f"{API}/agents/{agent}/remember",
                        json={"content": "answered during the shutdown"},
                        headers=token_headers(session["session_token"]) | {"X-Request-ID": "sigterm-held"},
                    )
                )
                await wait_until_blocked(db, holder)
                clients = [asyncio.create_task(keep_asking(n)) for n in range(16)]
                while len(answered) < 150:
                    await asyncio.sleep(0.01)
                server.terminate()  # in the middle of the load
                await asyncio.sleep(0.5)
                stop_clients.set()
            response = await held  # released: it completes during the graceful shutdown
            with contextlib.suppress(httpx.TransportError):
                await asyncio.gather(*clients)
        assert response.status_code == 201, response.text
        answered["sigterm-held"] = 201
        returncode = await asyncio.to_thread(server.wait, 20)
    finally:
        stop_clients.set()
        server.stop()
    assert returncode in (0, -signal.SIGTERM), returncode

    lines = by_request_id(access_entries(log_path.read_text()))
    missing = [request_id for request_id in answered if len(lines.get(request_id, [])) != 1]
    assert not missing, f"{len(missing)} of {len(answered)} answered requests without exactly one line: {missing[:5]}"
    for request_id, status in answered.items():
        assert lines[request_id][0]["status"] == status
    assert lines["sigterm-held"][0]["route"] == REMEMBER_ROUTE
