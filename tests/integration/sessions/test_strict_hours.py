"""Hours below one second, NaN or infinite are a 422, in the query as in the body; a refused
activation supersedes nothing and a refused extension changes nothing.

Before: `duration_hours=1e-9` made a session that expired at once and ended the agent's
live one; `extend_hours=1e-9` answered 200.
"""

from __future__ import annotations

from typing import Any

from tests.helpers.http import API, activate, assert_problem, token_headers
from tests.helpers.logs import collected_logs
from tests.helpers.owners import OwnerKey, unique_agent

TOO_SMALL_OR_NOT_FINITE = ("1e-9", "0.0002", "0", "-1", "nan", "NaN", "inf", "-inf", "1e400")
# JSON has no NaN or Infinity: such bodies are not JSON (400); the rest are a 422.
BODIES = (b"1e-9", b"0.0002", b"0", b"-1", b"1e400", b"NaN", b"Infinity", b'"2"', b"true")


async def test_activation_refuses_hours_below_a_second_or_not_finite(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    live = await activate(client, owner.key, agent)
    url = f"{API}/agents/{agent}/activate"
    with collected_logs() as logs:
        for hours in TOO_SMALL_OR_NOT_FINITE:
            response = await client.post(url, params={"duration_hours": hours}, headers=owner.headers)
            assert_problem(response, 422, "validation_error")
        for raw in BODIES:
            response = await client.post(
                url,
                content=b'{"duration_hours": ' + raw + b"}",
                headers={**owner.headers, "Content-Type": "application/json"},
            )
            assert response.status_code in (400, 422), (raw, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
    assert logs.errors() == []
    # Nothing was superseded: the first session is the agent's live session still.
    current = await client.get(f"{API}/session/current", headers=token_headers(live["session_token"]))
    assert current.status_code == 200, current.text
    assert current.json()["session_id"] == live["session_id"]
    history = await client.get(f"{API}/agents/{agent}/sessions", headers=owner.headers)
    assert [s["session_id"] for s in history.json()["sessions"]] == [live["session_id"]]

    # One second is the shortest session there is.
    shortest = await client.post(url, params={"duration_hours": str(1 / 3600)}, headers=owner.headers)
    assert shortest.status_code == 201, shortest.text


async def test_extension_refuses_hours_below_a_second_or_not_finite(client: Any, owner: OwnerKey) -> None:
    live = await activate(client, owner.key, unique_agent(), duration_hours=1)
    headers = token_headers(live["session_token"])
    url = f"{API}/session/extend"
    with collected_logs() as logs:
        for name in ("extend_hours", "additional_hours"):
            for hours in TOO_SMALL_OR_NOT_FINITE:
                response = await client.post(url, params={name: hours}, headers=headers)
                assert_problem(response, 422, "validation_error")
            for raw in BODIES:
                response = await client.post(
                    url,
                    content=b'{"' + name.encode() + b'": ' + raw + b"}",
                    headers={**headers, "Content-Type": "application/json"},
                )
                assert response.status_code in (400, 422), (name, raw, response.text)
    assert logs.errors() == []
    current = await client.get(f"{API}/session/current", headers=headers)
    assert current.json()["expires_at"] == live["expires_at"]
    assert current.json()["extensions"] == 0
