"""How a session shows in its agent's history: the row, completed by what Redis still holds."""

from __future__ import annotations

from datetime import UTC, datetime

from memanto_server.lib.timeutil import from_ms
from memanto_server.sessions.history import history_record
from memanto_server.sessions.repository import HistoryRow
from memanto_server.sessions.store import EndRecord, LiveState, Snapshot

HOUR = 3_600_000
START = int(datetime(2026, 3, 30, 12, tzinfo=UTC).timestamp() * 1000)
SID = "sess_history_one"


def row(**changes: object) -> HistoryRow:
    fields: dict[str, object] = {
        "session_id": SID,
        "created_at": from_ms(START),
        "expires_at": from_ms(START + 6 * HOUR),
        "ended_at": None,
        "end_reason": None,
        "stored": 0,
        "retrieved": 0,
        "extensions": 0,
    }
    fields.update(changes)
    return HistoryRow(**fields)  # type: ignore[arg-type]


def state(
    session_id: str = SID, *, expires: int = START + 8 * HOUR, counters: tuple[int, int, int] = (5, 3, 1)
) -> LiveState:
    return LiveState(session_id, START, expires, *counters)


def test_a_recorded_end_is_shown_as_recorded_whatever_redis_holds() -> None:
    ended = START + 2 * HOUR
    recorded = row(ended_at=from_ms(ended), end_reason="deactivated", stored=4, retrieved=2, extensions=1)
    live_elsewhere = Snapshot(live_session_id="sess_the_next_one", state=state("sess_the_next_one"))
    record = history_record(recorded, live_elsewhere, now=START + 5 * HOUR)
    assert (record.status, record.end_reason) == ("ended", "deactivated")
    assert record.ended_at == "2026-03-30T14:00:00Z"
    assert record.duration_seconds == 2 * 3600
    assert (record.memories_stored, record.memories_retrieved, record.extensions) == (4, 2, 1)


def test_the_live_session_shows_redis_counters_and_expiry_and_runs_until_now() -> None:
    snapshot = Snapshot(live_session_id=SID, state=state())
    record = history_record(row(), snapshot, now=START + 90 * 60_000)
    assert (record.status, record.end_reason, record.ended_at) == ("active", "active", None)
    assert record.expires_at == "2026-03-30T20:00:00Z"  # extended in Redis past the row's expiry
    assert (record.memories_stored, record.memories_retrieved, record.extensions) == (5, 3, 1)
    assert record.duration_seconds == 90 * 60


def test_a_session_deactivated_in_redis_but_not_yet_recorded_is_shown_deactivated() -> None:
    ended = START + 3 * HOUR
    tombstone = Snapshot(live_session_id=None, state=state(), ended_ms=ended)
    record = history_record(row(), tombstone, now=START + 4 * HOUR)
    assert (record.status, record.end_reason) == ("ended", "deactivated")
    assert record.ended_at == "2026-03-30T15:00:00Z"
    assert (record.memories_stored, record.memories_retrieved) == (5, 3)


def test_a_superseded_session_kept_beside_its_successor_is_shown_superseded() -> None:
    ended = START + HOUR
    predecessor = EndRecord("superseded", state(counters=(2, 1, 0)), ended)
    snapshot = Snapshot(live_session_id="sess_successor", state=state("sess_successor"), predecessor=predecessor)
    record = history_record(row(), snapshot, now=START + 2 * HOUR)
    assert (record.end_reason, record.ended_at) == ("superseded", "2026-03-30T13:00:00Z")
    assert (record.memories_stored, record.memories_retrieved) == (2, 1)


def test_a_session_that_ran_out_is_expired_at_its_expiry_with_its_last_counters() -> None:
    ran_out = Snapshot(live_session_id=None, state=state(expires=START + 7 * HOUR))
    record = history_record(row(), ran_out, now=START + 9 * HOUR)
    assert (record.end_reason, record.ended_at) == ("expired", "2026-03-30T19:00:00Z")
    assert record.duration_seconds == 7 * 3600
    assert record.memories_stored == 5


def test_a_session_redis_knows_nothing_of_is_expired_at_the_rows_expiry() -> None:
    record = history_record(row(stored=1), None, now=START + 9 * HOUR)
    assert (record.end_reason, record.ended_at) == ("expired", "2026-03-30T18:00:00Z")
    assert record.memories_stored == 1
    other = Snapshot(live_session_id="sess_other", state=state("sess_other"))
    assert history_record(row(), other, now=START + 9 * HOUR).end_reason == "expired"
