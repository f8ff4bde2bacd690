"""Agent rules: create, list, show, delete (api.md, Agents)."""

from __future__ import annotations

import msgspec

from memanto_server.agents.repository import AgentRepository, AgentRow
from memanto_server.agents.schemas import ActiveSession, AgentDetail, AgentList, AgentSummary
from memanto_server.auth.cache import Owner
from memanto_server.errors import Conflict, NotFound
from memanto_server.lib.pagination import decode_cursor, encode_cursor
from memanto_server.lib.text import reject_nul
from memanto_server.lib.timeutil import iso_z, now_ms
from memanto_server.sessions.service import SessionService


def _summary(row: AgentRow) -> AgentSummary:
    return AgentSummary(
        agent_id=row.agent_id,
        description=row.description,
        created_at=iso_z(row.created_at),
        last_session_at=iso_z(row.last_session_at) if row.last_session_at else None,
    )


class AgentCursor(msgspec.Struct, forbid_unknown_fields=True):
    after: str


def _not_found(agent_id: str) -> NotFound:
    return NotFound(f"agent '{agent_id}' not found", code="agent_not_found")


class AgentService:
    def __init__(self, repository: AgentRepository, sessions: SessionService) -> None:
        self._repository = repository
        self._sessions = sessions

    async def create(self, owner: Owner, agent_id: str, description: str | None) -> AgentSummary:
        reject_nul(description, "description")
        row = await self._repository.create(owner.owner_id, agent_id, description)
        if row is None:
            raise Conflict(f"agent '{agent_id}' already exists", code="agent_exists")
        return _summary(row)

    async def list(self, owner: Owner, limit: int, cursor: str | None) -> AgentList:
        position = decode_cursor(cursor, AgentCursor)
        rows = await self._repository.list(owner.owner_id, position.after if position else None, limit + 1)
        page = rows[:limit]
        next_cursor = encode_cursor(AgentCursor(after=page[-1].agent_id)) if len(rows) > limit else None
        return AgentList(agents=[_summary(r) for r in page], count=len(page), next_cursor=next_cursor)

    async def get(self, owner: Owner, agent_id: str) -> AgentDetail:
        found = await self._repository.get(owner.owner_id, agent_id)
        if found is None:
            raise _not_found(agent_id)
        live = await self._sessions.live(owner.owner_id, agent_id)
        active = None
        if live is not None:
            active = ActiveSession(
                session_id=live.session_id,
                created_at=iso_z(live.created_ms),
                expires_at=iso_z(live.expires_ms),
                time_remaining_seconds=max(0, (live.expires_ms - now_ms()) // 1000),
                memories_stored=live.stored,
                memories_retrieved=live.retrieved,
                extensions=live.extensions,
            )
        summary = _summary(found.row)
        return AgentDetail(
            agent_id=summary.agent_id,
            description=summary.description,
            created_at=summary.created_at,
            last_session_at=summary.last_session_at,
            memory_count=found.memory_count,
            session_count=found.session_count,
            active_session=active,
        )

    async def delete(self, owner: Owner, agent_id: str) -> None:
        if not await self._repository.exists(owner.owner_id, agent_id):
            raise _not_found(agent_id)
        # End the live session first: its token must die with the agent.
        await self._sessions.end_any(owner.owner_id, agent_id)
        if not await self._repository.delete(owner.owner_id, agent_id):
            raise _not_found(agent_id)
