"""Wire shapes of the session routes (api.md, Sessions)."""

from __future__ import annotations

from typing import Any

import msgspec

from memanto_server.limits import Hours


class ActivateRequest(msgspec.Struct, kw_only=True):
    duration_hours: Hours | None = None
    metadata: dict[str, Any] | None = None


class ExtendRequest(msgspec.Struct, kw_only=True):
    extend_hours: Hours | None = None
    additional_hours: Hours | None = None


class ActivatedSession(msgspec.Struct, kw_only=True):
    session_id: str
    session_token: str
    agent_id: str
    status: str
    created_at: str
    expires_at: str
    expires_in_seconds: int
    superseded_session_id: str | None


class CurrentSession(msgspec.Struct, kw_only=True):
    session_id: str
    agent_id: str
    status: str
    created_at: str
    expires_at: str
    time_remaining_minutes: int
    time_remaining_seconds: int
    memories_stored: int
    memories_retrieved: int
    extensions: int


class ExtendedSession(msgspec.Struct, kw_only=True):
    session_id: str
    agent_id: str
    previous_expires_at: str
    expires_at: str
    new_expires_at: str
    hours_added: float
    time_remaining_minutes: int
    extensions: int


class EndedSession(msgspec.Struct, kw_only=True):
    session_id: str
    agent_id: str
    status: str
    end_reason: str
    started_at: str
    ended_at: str
    duration_seconds: int
    duration: str
    memories_stored: int
    memories_retrieved: int


class SessionRecord(msgspec.Struct, kw_only=True):
    session_id: str
    status: str  # "active" or "ended"
    end_reason: str  # "active", "deactivated", "superseded" or "expired"
    started_at: str
    expires_at: str
    ended_at: str | None
    duration_seconds: int
    memories_stored: int
    memories_retrieved: int
    extensions: int


class SessionHistory(msgspec.Struct, kw_only=True):
    agent_id: str
    sessions: list[SessionRecord]
    count: int
    next_cursor: str | None
