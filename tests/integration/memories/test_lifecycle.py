"""The memory lifecycle: when a memory is about, expiry and restore, and the recalls in time.

`occurred_at` and `valid_until` on remember, batch-remember and PATCH; `POST …/memories/{id}/expire`
and `/restore`; `POST …/recall/recent`, `…/recall/as-of`, `…/recall/changed-since` with the recall
filters and cursor paging; expired memories left out of recall and answer unless asked for.
Everything against the real app, Postgres and Redis; times set in Postgres by the test where a
scenario needs them (never a sleep).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.helpers.http import API, assert_problem, parse_z
from tests.helpers.owners import Live, OwnerKey, start

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def remember(client: Any, live: Live, content: str, **fields: Any) -> str:
    response = await client.post(live.url("remember"), json={"content": content, **fields}, headers=live.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["memory_id"])


async def record(client: Any, live: Live, memory_id: str) -> dict[str, Any]:
    response = await client.get(live.url(f"memories/{memory_id}"), headers=live.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def post(client: Any, live: Live, route: str, body: Any = None, status: int = 200) -> dict[str, Any]:
    response = await client.post(live.url(route), json=body, headers=live.headers)
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


async def recall_ids(client: Any, live: Live, query: str, **body: Any) -> list[str]:
    result = await post(client, live, "recall", {"query": query, **body})
    return [m["memory_id"] for m in result["memories"]]


def ids(result: dict[str, Any]) -> list[str]:
    return [m["memory_id"] for m in result["memories"]]


async def retrieved(client: Any, live: Live) -> int:
    current = await client.get(f"{API}/session/current", headers=live.headers)
    assert current.status_code == 200, current.text
    return int(current.json()["memories_retrieved"])


async def set_times(db: asyncpg.Connection[Any], memory_id: str, **columns: datetime | None) -> None:
    """Move a memory's times (created_at, updated_at, occurred_at, …) to where a scenario needs them."""
    for column, value in columns.items():
        assert column in {"created_at", "updated_at", "occurred_at", "valid_until", "expired_at"}
        await db.execute(f"UPDATE memories SET {column} = $2 WHERE memory_id = $1", uuid.UUID(memory_id), value)  # noqa: S608


async def page_through(client: Any, live: Live, route: str, body: dict[str, Any]) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        result = await post(client, live, route, {**body, "cursor": cursor} if cursor else body)
        pages.append(ids(result))
        assert result["count"] == len(result["memories"])
        cursor = result["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50


# --------------------------------------------------------------------------- occurred_at, valid_until


async def test_a_memory_is_about_the_time_it_is_stored_unless_told(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    now_id = await remember(client, live, "Stored today")
    then_id = await remember(client, live, "Met the customer", occurred_at="2021-06-01T09:30:00Z")
    now, then = await record(client, live, now_id), await record(client, live, then_id)
    assert now["occurred_at"] == now["created_at"]
    assert then["occurred_at"] == "2021-06-01T09:30:00Z"
    assert parse_z(then["created_at"]) > datetime(2025, 1, 1, tzinfo=UTC)  # stored now, about then
    assert now["status"] == then["status"] == "active"
    assert now["valid_until"] is None
    assert now["expired_at"] is None


async def test_times_carry_their_offset_and_a_time_without_one_is_refused(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    offset = await remember(client, live, "Offset times", occurred_at="2022-01-02T03:04:05+02:00")
    assert (await record(client, live, offset))["occurred_at"] == "2022-01-02T01:04:05Z"
    # A time without an offset means a different moment on every server: refused, nothing stored.
    naive = await client.post(
        live.url("remember"),
        json={"content": "Naive times", "occurred_at": "2022-01-02T03:04:05"},
        headers=live.headers,
    )
    problem = assert_problem(naive, 422, "validation_error")
    assert problem["errors"][0]["field"] == "occurred_at"
    stored = await db.fetchval(
        "SELECT count(*) FROM memories WHERE owner_id = $1 AND content = 'Naive times'", uuid.UUID(owner.owner_id)
    )
    assert stored == 0


async def test_batch_remember_keeps_each_items_dates(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    live = await start(client, owner)
    body = {
        "memories": [
            {"content": "Imported one", "occurred_at": "2020-01-01T00:00:00Z"},
            {"content": "Imported two", "occurred_at": "2020-02-01T00:00:00Z", "valid_until": "2020-03-01T00:00:00Z"},
            {"content": "Not dated"},
        ]
    }
    stored = await post(client, live, "batch-remember", body, status=201)
    one, two, three = stored["memory_ids"]
    rows = {
        str(r["memory_id"]): r
        for r in await db.fetch(
            "SELECT memory_id, occurred_at, valid_until, created_at FROM memories WHERE memory_id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in stored["memory_ids"]],
        )
    }
    assert rows[one]["occurred_at"] == datetime(2020, 1, 1, tzinfo=UTC)
    assert rows[two]["valid_until"] == datetime(2020, 3, 1, tzinfo=UTC)
    assert rows[three]["occurred_at"] == rows[three]["created_at"]
    assert (await record(client, live, two))["status"] == "expired"  # its valid_until has passed


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"occurred_at": "last tuesday"}, "occurred_at"),
        ({"valid_until": "soon"}, "valid_until"),
        ({"occurred_at": "2021-13-01T00:00:00Z"}, "occurred_at"),
    ],
)
async def test_bad_times_are_422_and_store_nothing(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], fields: dict[str, Any], field: str
) -> None:
    live = await start(client, owner)
    response = await client.post(live.url("remember"), json={"content": "x", **fields}, headers=live.headers)
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["field"] == field
    batch = await client.post(
        live.url("batch-remember"),
        json={"memories": [{"content": "ok"}, {"content": "x", **fields}]},
        headers=live.headers,
    )
    assert assert_problem(batch, 422, "validation_error")["errors"][0]["field"] == f"memories[1].{field}"
    count = await db.fetchval("SELECT count(*) FROM memories WHERE agent_id = $1", live.agent_id)
    assert count == 0


async def test_patch_moves_occurred_at_and_valid_until(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    memory_id = await remember(client, live, "The office moves to Lyon")
    response = await client.patch(
        live.url(f"memories/{memory_id}"),
        json={"occurred_at": "2023-05-01T00:00:00Z", "valid_until": "2099-01-01T00:00:00Z"},
        headers=live.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["occurred_at"] == "2023-05-01T00:00:00Z"
    assert response.json()["valid_until"] == "2099-01-01T00:00:00Z"
    cleared = await client.patch(live.url(f"memories/{memory_id}"), json={"valid_until": None}, headers=live.headers)
    assert cleared.json()["valid_until"] is None
    assert cleared.json()["occurred_at"] == "2023-05-01T00:00:00Z"


# --------------------------------------------------------------------------- expire, restore


async def test_an_expired_memory_is_kept_but_left_out_of_recall_and_answer(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    old = await remember(client, live, "The billing contact is Ana Silva.", title="Billing contact")
    new = await remember(client, live, "The billing contact is Bo Chen.", title="Billing contact")
    expired = await post(client, live, f"memories/{old}/expire", {"reason": "superseded by a newer contact"})
    assert expired["memory_id"] == old
    assert expired["status"] == "expired"
    assert expired["expired_reason"] == "superseded by a newer contact"
    assert parse_z(expired["expired_at"]) <= datetime.now(UTC)

    assert await recall_ids(client, live, "billing contact") == [new]
    assert await recall_ids(client, live, "contact") == [new]
    assert await recall_ids(client, live, "contcat") == [new]  # misspelled: a close spelling
    answer = await post(client, live, "answer", {"question": "Who is the billing contact?"})
    assert "Bo Chen" in answer["answer"]
    assert "Ana Silva" not in answer["answer"]
    assert [s["memory_id"] for s in answer["sources"]] == [new]

    # Asked for, it comes back; the record shows it all along.
    assert set(await recall_ids(client, live, "billing contact", include_expired=True)) == {old, new}
    assert set(await recall_ids(client, live, "contact", include_expired=True)) == {old, new}
    with_expired = await post(
        client, live, "answer", {"question": "Who is the billing contact?", "include_expired": True}
    )
    assert "Ana Silva" in with_expired["answer"]
    query = await client.post(
        live.url("recall"), params={"query": "billing", "include_expired": "true"}, headers=live.headers
    )
    assert {m["memory_id"] for m in query.json()["memories"]} == {old, new}
    assert (await record(client, live, old))["content"] == "The billing contact is Ana Silva."


async def test_a_memory_past_its_valid_until_is_expired_and_one_before_it_is_not(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    past = await remember(
        client, live, "Promo code SPRING applies", valid_until=z(datetime.now(UTC) - timedelta(hours=1))
    )
    future = await remember(
        client, live, "Promo code SUMMER applies", valid_until=z(datetime.now(UTC) + timedelta(days=30))
    )
    assert await recall_ids(client, live, "promo code") == [future]
    assert await recall_ids(client, live, "promo") == [future]
    assert (await record(client, live, past))["status"] == "expired"
    assert (await record(client, live, future))["status"] == "active"


async def test_expire_again_keeps_the_first_expiry_and_restore_brings_it_back(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    memory_id = await remember(
        client, live, "Weekly sync is on Mondays", valid_until=z(datetime.now(UTC) - timedelta(days=1))
    )
    first = await post(client, live, f"memories/{memory_id}/expire", {"reason": "first"})
    again = await post(client, live, f"memories/{memory_id}/expire", {"reason": "second"})
    assert (again["expired_at"], again["expired_reason"]) == (first["expired_at"], "first")
    no_body = await client.post(live.url(f"memories/{memory_id}/expire"), headers=live.headers)
    assert no_body.status_code == 200, no_body.text

    restored = await post(client, live, f"memories/{memory_id}/restore")
    assert restored["status"] == "active"
    assert (restored["expired_at"], restored["expired_reason"], restored["valid_until"]) == (None, None, None)
    assert await recall_ids(client, live, "weekly sync") == [memory_id]
    # Restoring a memory that holds changes nothing, a future valid_until included.
    later = z(datetime.now(UTC) + timedelta(days=3))
    other = await remember(client, live, "Standup at nine", valid_until=later)
    updated_at = await db.fetchval("SELECT updated_at FROM memories WHERE memory_id = $1", uuid.UUID(other))
    kept = await post(client, live, f"memories/{other}/restore")
    assert kept["valid_until"] == later.split(".")[0] + "Z"
    assert await db.fetchval("SELECT updated_at FROM memories WHERE memory_id = $1", uuid.UUID(other)) == updated_at


async def test_expire_and_restore_refuse_what_is_not_the_agents(client: Any, owner: OwnerKey, make_owner: Any) -> None:
    live = await start(client, owner)
    other_agent = await start(client, owner)
    theirs = await remember(client, other_agent, "Another agent's memory")
    stranger = await start(client, await make_owner("stranger"))
    strangers = await remember(client, stranger, "Another owner's memory")
    for route in ("expire", "restore"):
        for memory_id in (theirs, strangers, str(uuid.uuid4()), "not-a-uuid"):
            response = await client.post(live.url(f"memories/{memory_id}/{route}"), headers=live.headers)
            assert_problem(response, 404, "memory_not_found")
        wrong_agent = await client.post(other_agent.url(f"memories/{theirs}/{route}"), headers=live.headers)
        assert_problem(wrong_agent, 403, "agent_mismatch")
        no_token = await client.post(live.url(f"memories/{theirs}/{route}"))
        assert_problem(no_token, 401, "missing_credentials")
    assert (await record(client, other_agent, theirs))["status"] == "active"
    long_reason = await client.post(
        other_agent.url(f"memories/{theirs}/expire"), json={"reason": "x" * 201}, headers=other_agent.headers
    )
    assert_problem(long_reason, 422, "validation_error")
    assert (await record(client, other_agent, theirs))["status"] == "active"


# --------------------------------------------------------------------------- recall/recent


async def test_recall_recent_is_newest_first_with_the_recall_filters_and_pages(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    made = []
    for i in range(7):
        memory_id = await remember(
            client, live, f"Note {i}", type="decision" if i % 2 else "fact", tags=["ops"] if i < 5 else ["hr"]
        )
        await set_times(db, memory_id, created_at=T0 + timedelta(hours=i))
        made.append(memory_id)
    newest_first = list(reversed(made))

    assert await page_through(client, live, "recall/recent", {"limit": 3}) == [
        newest_first[:3],
        newest_first[3:6],
        newest_first[6:],
    ]
    decisions = await post(client, live, "recall/recent", {"type": "decision"})
    assert ids(decisions) == [made[5], made[3], made[1]]
    assert decisions["temporal_mode"] == "recent"
    assert ids(await post(client, live, "recall/recent", {"tags": ["hr"]})) == [made[6], made[5]]
    window = {"created_after": z(T0 + timedelta(hours=1)), "created_before": z(T0 + timedelta(hours=4))}
    assert ids(await post(client, live, "recall/recent", window)) == [made[3], made[2]]
    no_body = await client.post(live.url("recall/recent"), headers=live.headers)
    assert [m["memory_id"] for m in no_body.json()["memories"]] == newest_first

    await post(client, live, f"memories/{made[6]}/expire")
    assert ids(await post(client, live, "recall/recent", {"limit": 1})) == [made[5]]
    assert ids(await post(client, live, "recall/recent", {"limit": 1, "include_expired": True})) == [made[6]]
    item = (await post(client, live, "recall/recent", {"limit": 1}))["memories"][0]
    assert item["id"] == item["memory_id"]
    assert item["text"] == item["content"] == "Note 5"


async def test_timeline_cursors_belong_to_their_recall(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    for i in range(3):
        await remember(client, live, f"Item {i}", type="fact")
    first = await post(client, live, "recall/recent", {"limit": 1})
    other_filters = await client.post(
        live.url("recall/recent"),
        json={"limit": 1, "type": "goal", "cursor": first["next_cursor"]},
        headers=live.headers,
    )
    assert_problem(other_filters, 422, "validation_error")
    other_recall = await client.post(
        live.url("recall/as-of"),
        json={"as_of": z(datetime.now(UTC)), "limit": 1, "cursor": first["next_cursor"]},
        headers=live.headers,
    )
    assert_problem(other_recall, 422, "validation_error")
    forged = await client.post(live.url("recall/recent"), json={"cursor": "bm90LWEtY3Vyc29y"}, headers=live.headers)
    assert_problem(forged, 422, "validation_error")


# --------------------------------------------------------------------------- recall/as-of


async def test_recall_as_of_is_what_had_occurred_and_was_not_yet_expired(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    # Imported history keeps its dates: stored today, about 2024.
    hired = await remember(client, live, "Ana joined the team", occurred_at=z(T0))
    office = await remember(client, live, "The office is in Paris", occurred_at=z(T0 + timedelta(days=10)))
    await post(client, live, f"memories/{office}/expire", {"reason": "moved"})
    await set_times(db, office, expired_at=T0 + timedelta(days=40))
    moved = await remember(client, live, "The office is in Lyon", occurred_at=z(T0 + timedelta(days=40)))
    trial = await remember(
        client, live, "Trial plan", occurred_at=z(T0 + timedelta(days=5)), valid_until=z(T0 + timedelta(days=20))
    )
    today = await remember(client, live, "Stored and about today")

    async def as_of(moment: datetime, **body: Any) -> list[str]:
        result = await post(client, live, "recall/as-of", {"as_of": z(moment), **body})
        assert result["temporal_mode"] == "as_of"
        assert result["as_of"] == result["as_of_date"] == moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        return ids(result)

    assert await as_of(T0 - timedelta(days=1)) == []
    assert await as_of(T0) == [hired]
    assert await as_of(T0 + timedelta(days=15)) == [office, trial, hired]  # latest first
    assert await as_of(T0 + timedelta(days=30)) == [office, hired]  # the trial ended on day 20
    assert await as_of(T0 + timedelta(days=50)) == [moved, hired]  # Paris was expired on day 40
    assert today in await as_of(datetime.now(UTC) + timedelta(minutes=1))
    assert await as_of(T0 + timedelta(days=15), type="fact", tags=["none"]) == []
    assert await page_through(client, live, "recall/as-of", {"as_of": z(T0 + timedelta(days=15)), "limit": 2}) == [
        [office, trial],
        [hired],
    ]


async def test_recall_as_of_requires_a_time(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    for body in ({}, {"as_of": "yesterday"}, {"as_of": None}):
        response = await client.post(live.url("recall/as-of"), json=body, headers=live.headers)
        assert_problem(response, 422, "validation_error")
    missing = await client.post(live.url("recall/as-of"), headers=live.headers)
    assert missing.status_code in (400, 422), missing.text


# --------------------------------------------------------------------------- recall/changed-since


async def test_recall_changed_since_names_what_was_created_changed_or_expired(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    untouched = await remember(client, live, "Old and untouched")
    patched = await remember(client, live, "Old then patched")
    expired = await remember(client, live, "Old then expired")
    lapsed = await remember(client, live, "Old, lapsed by its valid_until")
    restored = await remember(client, live, "Old, expired then restored")
    for memory_id in (untouched, patched, expired, lapsed, restored):
        await set_times(db, memory_id, created_at=T0, updated_at=T0, occurred_at=T0)
    since = datetime.now(UTC) - timedelta(minutes=5)
    await set_times(db, lapsed, valid_until=datetime.now(UTC) - timedelta(minutes=1))
    created = await remember(client, live, "New")
    changed = await client.patch(live.url(f"memories/{patched}"), json={"title": "Patched"}, headers=live.headers)
    assert changed.status_code == 200, changed.text
    await post(client, live, f"memories/{expired}/expire")
    await post(client, live, f"memories/{restored}/expire")
    await post(client, live, f"memories/{restored}/restore")

    result = await post(client, live, "recall/changed-since", {"since": z(since)})
    assert result["temporal_mode"] == "changed_since"
    assert result["since_date"] == result["since"]
    kinds = {m["memory_id"]: m["change_type"] for m in result["memories"]}
    assert kinds == {created: "created", patched: "updated", expired: "expired", lapsed: "expired", restored: "updated"}
    assert untouched not in kinds
    assert ids(result)[0] == restored  # the latest change first
    statuses = {m["memory_id"]: m["status"] for m in result["memories"]}
    assert statuses[expired] == statuses[lapsed] == "expired"

    pages = await page_through(client, live, "recall/changed-since", {"since": z(since), "limit": 2})
    assert [i for page in pages for i in page] == ids(result)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert (
        ids(await post(client, live, "recall/changed-since", {"since": z(datetime.now(UTC) + timedelta(hours=1))}))
        == []
    )
    assert ids(await post(client, live, "recall/changed-since", {"since": z(since), "type": "goal"})) == []


async def test_changed_since_pages_answer_one_question_while_memories_change(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    since = datetime.now(UTC) - timedelta(minutes=1)
    made = [await remember(client, live, f"Change {i}") for i in range(4)]
    first = await post(client, live, "recall/changed-since", {"since": z(since), "limit": 2})
    # Written and changed after the first page: the next sync (since the first page) finds them.
    late = await remember(client, live, "Written while paging")
    await post(client, live, f"memories/{made[0]}/expire")
    second = await post(
        client, live, "recall/changed-since", {"since": z(since), "limit": 2, "cursor": first["next_cursor"]}
    )
    seen = ids(first) + ids(second)
    assert late not in seen
    assert len(seen) == len(set(seen))
    assert set(seen) <= set(made)


# --------------------------------------------------------------------------- counters, credentials


async def test_the_recalls_in_time_count_what_they_return(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    for i in range(3):
        await remember(client, live, f"Counted {i}")
    before = await retrieved(client, live)
    await post(client, live, "recall/recent", {"limit": 2})
    await post(client, live, "recall/as-of", {"as_of": z(datetime.now(UTC) + timedelta(minutes=1))})
    await post(client, live, "recall/changed-since", {"since": z(datetime.now(UTC) - timedelta(hours=1)), "limit": 1})
    await post(client, live, "recall/as-of", {"as_of": z(T0)})
    assert await retrieved(client, live) == before + 2 + 3 + 1 + 0


@pytest.mark.parametrize("route", ["recall/recent", "recall/as-of", "recall/changed-since"])
async def test_the_recalls_in_time_need_the_agents_own_token(client: Any, owner: OwnerKey, route: str) -> None:
    live = await start(client, owner)
    other = await start(client, owner)
    body = {"as_of": z(T0), "since": z(T0)}
    assert_problem(await client.post(live.url(route), json=body), 401, "missing_credentials")
    assert_problem(await client.post(live.url(route), json=body, headers=other.headers), 403, "agent_mismatch")
    bad_limit = await client.post(live.url(route), json={**body, "limit": 0}, headers=live.headers)
    assert_problem(bad_limit, 422, "validation_error")
    too_many = await client.post(live.url(route), json={**body, "limit": 101}, headers=live.headers)
    assert_problem(too_many, 422, "validation_error")


# --------------------------------------------------------------------------- MEMANTO's spellings


async def test_type_null_is_the_default_type_and_min_similarity_is_min_score(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    memory_id = await remember(client, live, "Kestrels hover over the meadow", type=None)
    assert (await record(client, live, memory_id))["type"] == "fact"
    await remember(client, live, "A kestrel and a falcon; kestrel kestrel kestrel", title="Kestrel")
    everything = await post(client, live, "recall", {"query": "kestrel"})
    scores = sorted(m["score"] for m in everything["memories"])
    cut = (scores[0] + scores[-1]) / 2
    by_score = await post(client, live, "recall", {"query": "kestrel", "min_score": cut})
    by_similarity = await post(client, live, "recall", {"query": "kestrel", "min_similarity": cut})
    assert ids(by_similarity) == ids(by_score) != ids(everything)
    as_query = await client.post(
        live.url("recall"), params={"query": "kestrel", "min_similarity": cut}, headers=live.headers
    )
    assert [m["memory_id"] for m in as_query.json()["memories"]] == ids(by_score)
    # Given both, min_score is the one that counts.
    both = await post(client, live, "recall", {"query": "kestrel", "min_score": 0, "min_similarity": cut})
    assert ids(both) == ids(everything)
