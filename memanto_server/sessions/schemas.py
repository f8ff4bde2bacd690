"""Wire shapes of the session routes (api.md, Sessions)."""

from __future__ import annotations

from typing import Any

import msgspec

from memanto_server.agents.schemas import namespace_of
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
    # MEMANTO's names, beside ours: the agent's namespace and created_at.
    namespace: str = ""
    started_at: str = ""

    def __post_init__(self) -> None:
        self.namespace = namespace_of(self.agent_id)
        self.started_at = self.created_at


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
    # MEMANTO's names, beside ours: the agent's namespace and created_at.
    namespace: str = ""
    started_at: str = ""

    def __post_init__(self) -> None:
        self.namespace = namespace_of(self.agent_id)
        self.started_at = self.created_at


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
    # MEMANTO's names, beside ours: the duration in hours and memories_stored.
    namespace: str = ""
    duration_hours: float = 0.0
    memories_created: int = 0

    def __post_init__(self) -> None:
        self.namespace = namespace_of(self.agent_id)
        self.duration_hours = round(self.duration_seconds / 3600, 4)
        self.memories_created = self.memories_stored


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
