"""The access line in JSON (MEMANTO_LOG_FORMAT=json or production): one object per request, fields not prose."""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from memanto_server.main import create_app
from memanto_server.settings import Settings
from tests.helpers.http import API, activate, token_headers
from tests.helpers.owners import OwnerKey, unique_agent


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
    err = capfd.readouterr().err
    entries: list[dict[str, Any]] = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [e for e in entries if e.get("logger") == "memanto.access"]
    current = next(e for e in access if e.get("request_id") == "req-json-1")
    assert current["method"] == "GET"
    assert current["route"] == f"{API}/session/current"
    assert current["status"] == 200
    assert isinstance(current["duration_ms"], int | float)
    assert current["owner_id"] == owner.owner_id
    assert current["agent_id"] == agent
    assert current["level"] == "info"
    activated = next(e for e in access if e["route"] == f"{API}/agents/{{agent_id}}/activate")
    assert activated["status"] == 201
    assert activated["agent_id"] == agent
    for secret in (owner.key, session["session_token"]):
        if secret in err:
            pytest.fail(f"a credential appears in the log (it starts {secret[:6]}…)")


def test_uvicorn_does_not_format_an_access_line_of_its_own(settings: Settings) -> None:
    create_app(settings)  # configures logging
    # uvicorn builds its access line (path, query string) for every response whenever this
    # is true, whether or not the logger is disabled; ours comes from AccessLogMiddleware.
    assert logging.getLogger("uvicorn.access").hasHandlers() is False
    assert logging.getLogger().hasHandlers()
