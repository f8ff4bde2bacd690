"""How a session looks in its agent's history: the row in Postgres, completed by Redis.

A session's row is written at activation and completed when its end is recorded. Until then
the live session's counters and expiry are in Redis, and so is the end of a session that was
deactivated or superseded but whose record has not been written yet (a Postgres outage in
between, say): the history shows what Redis knows, so that it never says "expired" of a
session that ended otherwise, nor shows stale counters.
"""

from __future__ import annotations

from memanto_server.lib.timeutil import iso_z, to_ms
from memanto_server.sessions.repository import HistoryRow
from memanto_server.sessions.schemas import SessionRecord
from memanto_server.sessions.store import Snapshot


def history_record(row: HistoryRow, snapshot: Snapshot | None, now: int) -> SessionRecord:
    """A session as its history shows it at `now` (ms): its row, completed by what Redis still holds
    of a session whose end is not recorded yet (`snapshot`: the agent's, or None if none is kept)."""
    created = to_ms(row.created_at)
    expires, ended, reason = to_ms(row.expires_at), row.ended_at and to_ms(row.ended_at), row.end_reason
    stored, retrieved, extensions = row.stored, row.retrieved, row.extensions
    if reason is None:
        # Not recorded yet: live, or ended in Redis and about to be recorded (Redis knows how).
        known = snapshot.end_of(row.session_id) if snapshot else None
        state = known.state if known else snapshot.state if snapshot else None
        if state is not None and state.session_id == row.session_id:
            expires, stored, retrieved, extensions = (
                state.expires_ms,
                state.stored,
                state.retrieved,
                state.extensions,
            )
        live = snapshot is not None and snapshot.live_session_id == row.session_id
        if live:
            reason, ended = "active", None
        elif known is not None:
            reason, ended = known.reason, known.ended_ms
        else:
            reason, ended = "expired", expires
    end = ended if ended is not None else now
    return SessionRecord(
        session_id=row.session_id,
        status="active" if reason == "active" else "ended",
        end_reason=reason,
        started_at=iso_z(created),
        expires_at=iso_z(expires),
        ended_at=iso_z(ended) if ended is not None else None,
        duration_seconds=max(0, (end - created) // 1000),
        memories_stored=stored,
        memories_retrieved=retrieved,
        extensions=extensions,
    )
