"""The memory lifecycle through the Python client, against a real server process over loopback:
dates on remember and batch-remember, expire and restore, and the recalls in time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest

from memanto_server.client import AsyncMemantoClient, MemantoClient, NotFoundError, ValidationError
from memanto_server.memories.schemas import MemoryRecord, RememberRequest, TimelineResult
from tests.helpers.http import parse_z
from tests.helpers.owners import OwnerKey, unique_agent

pytestmark = pytest.mark.slow

CET = timezone(timedelta(hours=1))


@pytest.fixture
def server(server_url: str) -> str:
    """The run's shared server process (tests/fixtures/servers.py)."""
    return server_url


@pytest.fixture
def client(server: str, owner: OwnerKey) -> Iterator[MemantoClient]:
    with MemantoClient(server, owner.key) as memanto:
        yield memanto


def contents(result: TimelineResult) -> list[str]:
    return [m.content for m in result.memories]


def test_remember_and_batch_keep_the_time_a_memory_is_about(
    client: MemantoClient, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = client.agent(unique_agent("client-dates"))
    single = agent.remember(
        "Moved to Berlin", occurred_at=datetime(2019, 3, 1, 9, 30), valid_until="2031-01-01T00:00:00+01:00"
    )
    record = agent.get_memory(single.memory_id)
    assert parse_z(record.occurred_at or "") == datetime(2019, 3, 1, 9, 30, tzinfo=UTC)  # naive: UTC
    assert parse_z(record.valid_until or "") == datetime(2030, 12, 31, 23, tzinfo=UTC)
    assert parse_z(record.created_at) > datetime.now(UTC) - timedelta(minutes=5)  # stored now, about 2019
    assert record.status == "active"

    batch = agent.batch_remember(
        [
            {"content": "Started at Acme", "occurred_at": datetime(2017, 9, 1, 8, tzinfo=CET)},
            RememberRequest(
                content="Left Acme", occurred_at=datetime(2021, 6, 30, 17), valid_until=datetime(2022, 1, 1)
            ),
            {"content": "No date given"},
        ]
    )
    started, left, undated = (agent.get_memory(memory_id) for memory_id in batch.memory_ids)
    assert parse_z(started.occurred_at or "") == datetime(2017, 9, 1, 7, tzinfo=UTC)
    assert parse_z(left.occurred_at or "") == datetime(2021, 6, 30, 17, tzinfo=UTC)
    assert parse_z(left.valid_until or "") == datetime(2022, 1, 1, tzinfo=UTC)
    assert left.status == "expired"  # its valid_until has passed
    assert undated.occurred_at == undated.created_at
    assert (undated.valid_until, undated.status) == (None, "active")

    changed = agent.update_memory(undated.memory_id, occurred_at=datetime(2020, 2, 2), valid_until=datetime(2040, 1, 1))
    assert (changed.occurred_at, changed.valid_until) == ("2020-02-02T00:00:00Z", "2040-01-01T00:00:00Z")

    # A time the server cannot read is a 422 and stores nothing.
    before = agent.get_memory(single.memory_id)
    with pytest.raises(ValidationError) as bad:
        agent.remember("Bad date", occurred_at="last tuesday")
    assert bad.value.status == 422
    with pytest.raises(ValidationError):
        agent.batch_remember([{"content": "fine"}, {"content": "bad", "valid_until": "soon"}])
    assert before == agent.get_memory(single.memory_id)
    assert client.get_agent(agent.agent_id).memory_count == 4


def test_expire_restore_and_what_recall_and_answer_see(client: MemantoClient) -> None:
    agent = client.agent(unique_agent("client-expire"))
    kept = agent.remember("The office is in Berlin", type="fact")
    moved = agent.remember("The office is in Hamburg", type="fact")

    expired = agent.expire(moved.memory_id, reason="moved back")
    assert isinstance(expired, MemoryRecord)
    assert (expired.status, expired.expired_reason) == ("expired", "moved back")
    assert expired.expired_at is not None
    again = agent.expire(moved.memory_id, reason="another reason")  # keeps the first expiry and reason
    assert (again.expired_at, again.expired_reason) == (expired.expired_at, "moved back")

    assert [m.memory_id for m in agent.recall("office").memories] == [kept.memory_id]
    with_expired = agent.recall("office", include_expired=True)
    assert sorted(m.memory_id for m in with_expired.memories) == sorted([kept.memory_id, moved.memory_id])
    assert "Hamburg" not in agent.answer("Where is the office?").answer
    assert moved.memory_id in {s.memory_id for s in agent.answer("Hamburg office", include_expired=True).sources}

    restored = agent.restore(moved.memory_id)
    assert (restored.status, restored.expired_at, restored.expired_reason) == ("active", None, None)
    assert moved.memory_id in {m.memory_id for m in agent.recall("Hamburg").memories}

    for call in (lambda: agent.expire("00000000-0000-4000-8000-000000000000"), lambda: agent.restore("not-a-uuid")):
        with pytest.raises(NotFoundError) as missing:
            call()
        assert missing.value.code == "memory_not_found"
    with pytest.raises(ValidationError):
        agent.expire(kept.memory_id, reason="x" * 201)
    assert agent.get_memory(kept.memory_id).status == "active"


def test_recalls_in_time_with_filters_and_pages(client: MemantoClient) -> None:
    agent = client.agent(unique_agent("client-timeline"))
    agent.remember("Joined the team", type="event", occurred_at="2020-01-15T09:00:00Z", tags=["career"])
    agent.remember(
        "Worked on billing", type="fact", occurred_at="2021-03-01T00:00:00Z", valid_until="2023-01-01T00:00:00Z"
    )
    agent.remember("Leads the payments team", type="fact", occurred_at="2023-02-01T00:00:00Z", tags=["career"])
    agent.remember("Prefers email", type="preference")  # about now

    recent = agent.recall_recent()
    assert recent.temporal_mode == "recent"
    # Newest stored first; "Worked on billing" is past its valid_until.
    assert contents(recent) == ["Prefers email", "Leads the payments team", "Joined the team"]
    assert "Worked on billing" in contents(agent.recall_recent(include_expired=True))
    assert contents(agent.recall_recent(type="preference")) == ["Prefers email"]

    in_2022 = agent.recall_as_of(datetime(2022, 6, 1))
    assert (in_2022.temporal_mode, in_2022.as_of) == ("as_of", "2022-06-01T00:00:00Z")
    assert contents(in_2022) == ["Worked on billing", "Joined the team"]  # latest occurred_at first
    assert contents(agent.recall_as_of("2024-01-01T00:00:00Z", tags=["career"])) == [
        "Leads the payments team",
        "Joined the team",
    ]
    assert contents(agent.recall_as_of("2019-12-31T00:00:00Z")) == []

    # Pages: the same recall with the cursor of the page before, until there is none.
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = agent.recall_recent(limit=1, include_expired=True, cursor=cursor)
        seen += contents(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(set(seen))
    assert len(seen) == 4
    first = agent.recall_as_of("2024-01-01T00:00:00Z", limit=1)
    assert first.next_cursor is not None
    with pytest.raises(ValidationError):  # a cursor belongs to its own recall
        agent.recall_recent(limit=1, cursor=first.next_cursor)

    mark = datetime.now(UTC)
    time.sleep(1.1)  # the API's times are whole seconds: a change after `mark` is in a later second
    joined = next(m for m in agent.recall_recent().memories if m.content == "Joined the team")
    agent.expire(joined.memory_id, reason="wrong date")
    agent.remember("Speaks Portuguese", type="fact")
    changed = agent.recall_changed_since(mark)
    assert changed.temporal_mode == "changed_since"
    assert [(m.content, m.change_type) for m in changed.memories] == [
        ("Speaks Portuguese", "created"),
        ("Joined the team", "expired"),
    ]
    assert changed.memories[1].expired_reason == "wrong date"
    assert agent.current().memories_retrieved > 0  # what the recalls returned counts as retrieved


async def test_async_lifecycle(server: str, owner: OwnerKey) -> None:
    async with AsyncMemantoClient(server, owner.key) as client:
        agent = client.agent(unique_agent("client-async-life"))
        old = await agent.remember("Lived in Lisbon", occurred_at=datetime(2015, 5, 5), valid_until="2018-01-01")
        now = await agent.remember("Lives in Porto")
        assert (await agent.get_memory(old.memory_id)).status == "expired"
        batch = await agent.batch_remember(
            [RememberRequest(content="Visited Madrid", occurred_at=datetime(2016, 7, 1))]
        )
        assert (await agent.get_memory(batch.memory_ids[0])).occurred_at == "2016-07-01T00:00:00Z"

        assert contents(await agent.recall_as_of(datetime(2017, 1, 1))) == ["Visited Madrid", "Lived in Lisbon"]
        expired = await agent.expire(now.memory_id, reason="moved")
        assert expired.status == "expired"
        assert contents(await agent.recall_recent()) == ["Visited Madrid"]
        assert [m.memory_id for m in (await agent.recall("Porto", include_expired=True)).memories] == [now.memory_id]
        assert (await agent.answer("Porto", include_expired=True)).sources[0].memory_id == now.memory_id
        changed = await agent.recall_changed_since(datetime.now(UTC) - timedelta(minutes=5), limit=1)
        assert changed.count == 1
        assert changed.next_cursor is not None
        assert (await agent.restore(now.memory_id)).status == "active"
        with pytest.raises(NotFoundError):
            await agent.expire("00000000-0000-4000-8000-000000000000")
