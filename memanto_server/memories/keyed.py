"""Memory calls made with an owner's API key alone (MCP tools, compat routes).

Such a caller has no session token: its calls run in the agent's live session, and a session
is activated only when the agent has none, so they never supersede a session that another
client (the CLI, an SDK, another MCP client) holds. What they store and retrieve is counted in
that session like any REST call.

Two callers that find no live session at the same time would each activate one, the second
superseding the first: within a process, one lock per agent lets only the first activate; across
processes, a call whose session was superseded (or ran out, or ended) meanwhile starts over on
the agent's live session. A memory call proves its session live before it writes anything, so
starting over never stores twice.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

from memanto_server.agents.repository import AgentRepository
from memanto_server.auth.cache import Owner
from memanto_server.errors import NotFound, Unauthorized
from memanto_server.sessions.service import SessionService
from memanto_server.sessions.tokens import SessionClaims

T = TypeVar("T")

# Why a call may start over on the agent's live session.
SESSION_GONE = frozenset({"session_superseded", "session_expired", "session_ended"})
ATTEMPTS = 3


class KeyedSessions:
    def __init__(self, sessions: SessionService, agents: AgentRepository) -> None:
        self._sessions = sessions
        self._agents = agents
        self._activating: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    async def live_claims(self, owner: Owner, agent_id: str) -> SessionClaims:
        """The agent's live session, or a 404: `agent_not_found` or `no_active_session`."""
        claims = await self._live(owner, agent_id)
        if claims is None:
            raise await self._none_live(owner, agent_id)
        return claims

    async def claims(self, owner: Owner, agent_id: str, client: str) -> SessionClaims:
        """The agent's live session; a new one (marked with `client`) only when none is live."""
        claims = await self._live(owner, agent_id)
        if claims is not None:
            return claims
        key = (owner.owner_id, agent_id)
        lock = self._activating.get(key)
        if lock is None:
            lock = self._activating[key] = asyncio.Lock()
        async with lock:
            claims = await self._live(owner, agent_id)
            if claims is not None:
                return claims
            if not await self._agents.exists(owner.owner_id, agent_id):
                raise NotFound(f"agent '{agent_id}' not found", code="agent_not_found")
            activated = await self._sessions.activate(owner, agent_id, None, {"client": client})
            return SessionClaims(owner_id=owner.owner_id, agent_id=agent_id, session_id=activated.session_id)

    async def run(self, owner: Owner, agent_id: str, client: str, call: Callable[[SessionClaims], Awaitable[T]]) -> T:
        """`call` within the agent's live session (see the module's docstring)."""
        for attempt in range(ATTEMPTS):
            claims = await self.claims(owner, agent_id, client)
            try:
                return await call(claims)
            except Unauthorized as exc:
                if exc.code not in SESSION_GONE or attempt == ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _live(self, owner: Owner, agent_id: str) -> SessionClaims | None:
        state = await self._sessions.live(owner.owner_id, agent_id)
        if state is None:
            return None
        return SessionClaims(owner_id=owner.owner_id, agent_id=agent_id, session_id=state.session_id)

    async def _none_live(self, owner: Owner, agent_id: str) -> NotFound:
        if not await self._agents.exists(owner.owner_id, agent_id):
            return NotFound(f"agent '{agent_id}' not found", code="agent_not_found")
        return NotFound(f"agent '{agent_id}' has no active session", code="no_active_session")
