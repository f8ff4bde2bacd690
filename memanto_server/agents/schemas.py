"""Wire shapes of the agent routes (api.md, Agents)."""

from __future__ import annotations

import msgspec

from memanto_server.limits import AGENT_ID_PATTERN as AGENT_ID_PATTERN
from memanto_server.limits import AgentId, Description

# MEMANTO's clients name an agent's memories by its Moorcheh namespace.
NAMESPACE_PREFIX = "memanto_agent_"


def namespace_of(agent_id: str) -> str:
    """The agent's namespace in MEMANTO's clients: `memanto_agent_{agent_id}`."""
    return NAMESPACE_PREFIX + agent_id


class CreateAgentRequest(msgspec.Struct, kw_only=True):
    agent_id: AgentId
    description: Description | None = None


class AgentSummary(msgspec.Struct, kw_only=True):
    agent_id: str
    description: str | None
    created_at: str
    last_session_at: str | None


class AgentList(msgspec.Struct, kw_only=True):
    agents: list[AgentSummary]
    count: int
    next_cursor: str | None


class ActiveSession(msgspec.Struct, kw_only=True):
    session_id: str
    created_at: str
    expires_at: str
    time_remaining_seconds: int
    memories_stored: int
    memories_retrieved: int
    extensions: int


class AgentDetail(msgspec.Struct, kw_only=True):
    agent_id: str
    description: str | None
    created_at: str
    last_session_at: str | None
    memory_count: int
    session_count: int
    active_session: ActiveSession | None
