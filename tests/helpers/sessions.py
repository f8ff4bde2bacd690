"""Checks of session rules that several suites run against different topologies."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from tests.helpers.http import API, activate, parse_z, token_headers


async def assert_concurrent_extends_add_up(base_url: str, key: str, agent_id: str) -> None:
    """Ten concurrent one-hour extends of a new one-hour session, however many instances or
    Redis nodes serve them: none is lost, and each saw a different previous expiry."""
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as client:
        session = await activate(client, key, agent_id, duration_hours=1)
        headers = token_headers(session["session_token"])
        responses = await asyncio.gather(
            *(client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers) for _ in range(10))
        )
        assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
        current = await client.get(f"{API}/session/current", headers=headers)
    assert current.status_code == 200, current.text
    created = parse_z(session["created_at"])
    assert parse_z(current.json()["expires_at"]) - created == timedelta(hours=11)
    assert current.json()["extensions"] == 10
    # 1 h, 2 h, …, 10 h after creation: each extend read the expiry the one before it wrote.
    previous = sorted(parse_z(r.json()["previous_expires_at"]) - created for r in responses)
    assert previous == [timedelta(hours=h) for h in range(1, 11)]
