"""Bad input of every shape is a 4xx problem: nothing stored, no traceback in the log.

Each of these was a 500 before: a JSON body nested a thousand levels deep (RecursionError)
or not UTF-8, on every JSON route and before credentials are looked at; a NUL character in
`tags` (query and body), in `Idempotency-Key` or in a batch item's `idempotency_key`
(Postgres cannot store it). Others were accepted when they should not be: a JSON body sent as
another media type, `"0.5"` for a number, a bare number or `now` for a time, a score outside
[0, 1].
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from tests.helpers.http import API, assert_problem
from tests.helpers.logs import Collected, collected_logs
from tests.helpers.owners import Live, OwnerKey, start

DEEP = b'{"metadata": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1001
DEEP_ARRAY = b"[" * 1000 + b"]" * 1000
NOT_UTF8 = b'{"content": "caf\xe9 \xff\xfe"}'
JSON = {"Content-Type": "application/json"}


async def json_routes(client: Any) -> list[tuple[str, str]]:
    """(method, path template) of every route whose request has a JSON body, from the document."""
    document = (await client.get("/schema/openapi.json")).json()
    found = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "requestBody" in operation
    ]
    assert len(found) >= 8, found  # activate, extend, agents, remember, batch-remember, recall, answer, patch
    return found


def url(path: str, live: Live) -> str:
    return path.replace("{agent_id}", live.agent_id).replace("{memory_id}", str(uuid.uuid4()))


async def nothing_stored(db: asyncpg.Connection[Any], owner: OwnerKey) -> None:
    owner_id = uuid.UUID(owner.owner_id)
    assert await db.fetchval("SELECT count(*) FROM memories WHERE owner_id = $1", owner_id) == 0
    assert await db.fetchval("SELECT count(*) FROM agents WHERE owner_id = $1", owner_id) == 1  # the live one


@pytest.fixture
def logs() -> Iterator[Collected]:
    with collected_logs() as collected:
        yield collected


@pytest.mark.parametrize(
    ("body", "detail"),
    [(DEEP, "nests deeper"), (DEEP_ARRAY, "nests deeper"), (NOT_UTF8, "UTF-8"), (b'{"content": ', "not valid JSON")],
    ids=["deep object", "deep array", "not UTF-8", "truncated"],
)
async def test_a_malformed_body_is_400_on_every_json_route_with_or_without_credentials(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], logs: Collected, body: bytes, detail: str
) -> None:
    live = await start(client, owner)
    credentials = {**live.headers, **owner.headers}
    for method, path in await json_routes(client):
        for headers in ({}, credentials):
            response = await client.request(method, url(path, live), content=body, headers={**JSON, **headers})
            problem = assert_problem(response, 400, "bad_request")
            assert detail in problem["detail"], (method, path, problem)
    assert logs.errors() == []
    await nothing_stored(db, owner)


async def test_a_json_body_sent_as_another_media_type_is_415(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], logs: Collected
) -> None:
    live = await start(client, owner)
    credentials = {**live.headers, **owner.headers}
    for method, path in await json_routes(client):
        for media_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
            response = await client.request(
                method,
                url(path, live),
                content=b'{"content": "x"}',
                headers={**credentials, "Content-Type": media_type},
            )
            assert_problem(response, 415, "unsupported_media_type")
    assert logs.errors() == []
    await nothing_stored(db, owner)
    # JSON by another name is JSON; no Content-Type at all is read as JSON too.
    for headers in (
        {"Content-Type": "application/json; charset=utf-8"},
        {"Content-Type": "application/merge-patch+json"},
        {},
    ):
        response = await client.post(
            live.url("remember"), content=b'{"content": "x"}', headers={**live.headers, **headers}
        )
        assert response.status_code == 201, (headers, response.text)


async def test_nul_characters_are_refused_wherever_they_come(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], logs: Collected
) -> None:
    live = await start(client, owner)
    h = live.headers
    attempts = [
        client.post(live.url("recall"), params={"query": "x", "tags": "a\x00b"}, headers=h),
        client.get(live.url("memories"), params={"tags": ["ok", "a\x00b"]}, headers=h),
        client.post(live.url("recall"), json={"query": "x", "tags": ["a\x00b"]}, headers=h),
        client.post(live.url("remember"), json={"content": "x", "tags": ["a\x00b"]}, headers=h),
        client.post(live.url("batch-remember"), json={"memories": [{"content": "x", "tags": ["\x00"]}]}, headers=h),
        client.post(
            live.url("batch-remember"), json={"memories": [{"content": "x", "idempotency_key": "k\x00"}]}, headers=h
        ),
        client.post(live.url("remember"), json={"content": "x", "idempotency_key": "k\x00"}, headers=h),
        client.post(live.url("remember"), json={"content": "a\x00b"}, headers=h),
        client.post(live.url("remember"), params={"content": "a\x00b"}, headers=h),
        client.post(live.url("recall"), params={"query": "a\x00b"}, headers=h),
        client.post(live.url("answer"), json={"question": "a\x00b"}, headers=h),
        client.post(f"{API}/agents", json={"agent_id": "nul-agent", "description": "a\x00b"}, headers=owner.headers),
    ]
    for attempt in attempts:
        response = await attempt
        problem = assert_problem(response, 422, "validation_error")
        assert "NUL" in problem["detail"], problem
    assert logs.errors() == []
    await nothing_stored(db, owner)


async def test_a_nul_in_the_idempotency_key_header_is_refused(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], logs: Collected
) -> None:
    live = await start(client, owner)
    for key in ("k\x00", "\x00"):
        response = await client.post(
            live.url("remember"), params={"content": "x"}, headers={**live.headers, "Idempotency-Key": key}
        )
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    assert logs.errors() == []
    await nothing_stored(db, owner)


async def test_numbers_and_times_are_read_strictly(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], logs: Collected
) -> None:
    live = await start(client, owner)
    h = live.headers
    refused = {
        "confidence as text": client.post(live.url("remember"), json={"content": "x", "confidence": "0.5"}, headers=h),
        "limit as text": client.post(live.url("recall"), json={"query": "x", "limit": "5"}, headers=h),
        "tags as text": client.post(live.url("remember"), json={"content": "x", "tags": "a"}, headers=h),
        "a number for a time (body)": client.post(
            live.url("recall"), json={"query": "x", "created_after": 1700000000}, headers=h
        ),
        "a number for a time (query)": client.post(
            live.url("recall"), params={"query": "x", "created_after": "1700000000"}, headers=h
        ),
        "now (body)": client.post(live.url("recall"), json={"query": "x", "created_before": "now"}, headers=h),
        "now (query)": client.get(live.url("memories"), params={"created_before": "now"}, headers=h),
        "no offset (body)": client.post(
            live.url("recall"), json={"query": "x", "created_after": "2026-01-01T00:00:00"}, headers=h
        ),
        "no offset (query)": client.get(
            live.url("memories"), params={"created_after": "2026-01-01T00:00:00"}, headers=h
        ),
        "a date alone": client.get(live.url("memories"), params={"created_after": "2026-01-01"}, headers=h),
    }
    for name, attempt in refused.items():
        response = await attempt
        assert_problem(response, 422, "validation_error"), name
    for score in ("2", "-0.1", "1.0001", "nan", "inf", "-inf"):
        response = await client.post(live.url("recall"), params={"query": "x", "min_score": score}, headers=h)
        assert_problem(response, 422, "validation_error")
    for raw in (b"2", b"-0.1", b"1e400", b"NaN", b"Infinity"):
        body = b'{"query": "x", "min_score": ' + raw + b"}"
        response = await client.post(live.url("recall"), content=body, headers={**h, **JSON})
        assert response.status_code in (400, 422), (raw, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert logs.errors() == []
    await nothing_stored(db, owner)

    # What is allowed still is.
    ok = await client.post(
        live.url("recall"),
        params={"query": "x", "min_score": "1", "created_after": "2026-01-01T00:00:00Z"},
        headers=h,
    )
    assert ok.status_code == 200, ok.text
    ok = await client.post(
        live.url("recall"),
        json={"query": "x", "min_score": 0, "created_after": "2026-01-01T00:00:00+02:00"},
        headers=h,
    )
    assert ok.status_code == 200, ok.text
