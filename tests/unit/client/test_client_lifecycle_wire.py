"""The requests the client core builds for the memory lifecycle, read off its first `Send` step
(the core is free of I/O: an operation yields the request it wants sent)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from memanto_server.client._core import ClientCore
from memanto_server.client._sessions import SessionState
from memanto_server.client._steps import Op, Send
from memanto_server.memories.schemas import RememberRequest

LATER = datetime.now(UTC) + timedelta(days=1)
CET = timezone(timedelta(hours=1))


@pytest.fixture
def core() -> ClientCore:
    return ClientCore("http://127.0.0.1:1", "mk_test", max_retries=0, renew_threshold_minutes=60, default_hours=None)


@pytest.fixture
def st() -> SessionState:
    """A handle's state with a live token: the first request of an operation is its own."""
    return SessionState("agent-a", "header.payload.signature", expires_at=LATER)


def sent(op: Op[Any]) -> tuple[Send, Any]:
    """The first request an operation asks for, and its JSON body."""
    step = op.send(None)
    while not isinstance(step, Send):
        step = op.send(None)
    op.close()
    return step, json.loads(step.content) if step.content else None


def test_remember_sends_occurred_at_and_valid_until_in_utc(core: ClientCore, st: SessionState) -> None:
    request, body = sent(
        core.agents.remember(
            st, "Moved to Berlin", occurred_at=datetime(2019, 3, 1, 9, 30), valid_until=datetime(2031, 1, 1, tzinfo=CET)
        )
    )
    assert (request.method, request.path) == ("POST", "/api/v2/agents/agent-a/remember")
    assert body["occurred_at"] == "2019-03-01T09:30:00.000000Z"  # a naive datetime is UTC
    assert body["valid_until"] == "2030-12-31T23:00:00.000000Z"
    _, as_text = sent(core.agents.remember(st, "x", occurred_at="2019-03-01T10:30:00+01:00"))
    assert as_text["occurred_at"] == "2019-03-01T09:30:00.000000Z"
    _, dated = sent(core.agents.remember(st, "x", occurred_at="2019-03-01", valid_until="not a time"))
    assert dated["occurred_at"] == "2019-03-01T00:00:00.000000Z"  # a date: its midnight, UTC
    assert dated["valid_until"] == "not a time"  # for the server to refuse, with its reason
    _, plain = sent(core.agents.remember(st, "x"))
    assert "occurred_at" not in plain
    assert "valid_until" not in plain


def test_batch_items_carry_their_dates_as_dicts_and_as_typed_requests(core: ClientCore, st: SessionState) -> None:
    typed = RememberRequest(
        content="typed", occurred_at=datetime(2020, 5, 1, 8, tzinfo=CET), valid_until=datetime(2021, 1, 1)
    )
    _, body = sent(
        core.agents.batch_remember(
            st, [{"content": "dict", "occurred_at": datetime(2018, 1, 2, 3, 4, 5), "valid_until": None}, typed]
        )
    )
    first, second = body["memories"]
    assert first["occurred_at"] == "2018-01-02T03:04:05.000000Z"
    assert first["valid_until"] is None
    assert datetime.fromisoformat(second["occurred_at"]) == datetime(2020, 5, 1, 7, tzinfo=UTC)
    assert datetime.fromisoformat(second["valid_until"]) == datetime(2021, 1, 1, tzinfo=UTC)


def test_update_memory_sends_times_in_utc(core: ClientCore, st: SessionState) -> None:
    request, body = sent(
        core.agents.update_memory(st, "m-1", {"occurred_at": datetime(2019, 1, 1), "valid_until": None})
    )
    assert (request.method, request.path) == ("PATCH", "/api/v2/agents/agent-a/memories/m-1")
    assert body == {"occurred_at": "2019-01-01T00:00:00.000000Z", "valid_until": None}


def test_expire_and_restore(core: ClientCore, st: SessionState) -> None:
    request, body = sent(core.agents.expire(st, "m/1", "moved away"))
    assert (request.method, request.path, body) == (
        "POST",
        "/api/v2/agents/agent-a/memories/m%2F1/expire",
        {"reason": "moved away"},
    )
    _, no_reason = sent(core.agents.expire(st, "m-1"))
    assert no_reason is None
    request, body = sent(core.agents.restore(st, "m-1"))
    assert (request.method, request.path, body) == ("POST", "/api/v2/agents/agent-a/memories/m-1/restore", None)


def test_recalls_in_time_send_their_time_filters_and_cursor(core: ClientCore, st: SessionState) -> None:
    request, body = sent(core.agents.timeline(st, "recent", limit=5, type="fact", include_expired=True, cursor="c1"))
    assert request.path == "/api/v2/agents/agent-a/recall/recent"
    assert body == {"limit": 5, "type": "fact", "cursor": "c1", "include_expired": True}
    request, body = sent(
        core.agents.timeline(
            st, "as-of", as_of=datetime(2022, 6, 1), type=["fact", "event"], tags=["a"], created_after="2020-01-01"
        )
    )
    assert request.path == "/api/v2/agents/agent-a/recall/as-of"
    assert body == {
        "as_of": "2022-06-01T00:00:00.000000Z",
        "limit": 10,
        "type": ["fact", "event"],
        "tags": ["a"],
        "created_after": "2020-01-01T00:00:00.000000Z",
    }
    request, body = sent(core.agents.timeline(st, "changed-since", since="2024-01-01T01:00:00+01:00"))
    assert request.path == "/api/v2/agents/agent-a/recall/changed-since"
    assert body == {"since": "2024-01-01T00:00:00.000000Z", "limit": 10}


def test_recall_and_answer_ask_for_expired_memories_only_when_told(core: ClientCore, st: SessionState) -> None:
    _, recall = sent(core.agents.recall(st, "berlin"))
    assert "include_expired" not in recall
    _, recall = sent(core.agents.recall(st, "berlin", include_expired=True))
    assert recall["include_expired"] is True
    _, answer = sent(core.agents.answer(st, "where?", include_expired=True))
    assert answer == {"question": "where?", "limit": 5, "include_expired": True}
