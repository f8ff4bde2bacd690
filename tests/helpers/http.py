"""HTTP conveniences: the API prefix, credentials headers, activation, problem-details checks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

API = "/api/v2"


def parse_z(value: str) -> datetime:
    """An ISO-8601 UTC time with the contract's `Z` suffix."""
    assert isinstance(value, str), value
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.removesuffix("Z") + "+00:00")


def token_headers(token: str, key: str | None = None) -> dict[str, str]:
    headers = {"X-Session-Token": token}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return headers


async def activate(client: Any, key: str, agent_id: str, **params: Any) -> dict[str, Any]:
    response = await client.post(
        f"{API}/agents/{agent_id}/activate", params=params, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body  # type: ignore[no-any-return]


def assert_unavailable(response: httpx.Response) -> None:
    """A dependency outage: 503 `dependency_unavailable` with a usable `Retry-After`."""
    assert_problem(response, 503, "dependency_unavailable")
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None, response.headers
    assert retry_after.isdigit(), retry_after
    assert int(retry_after) > 0
