"""Session rules: activate, check, extend, deactivate (api.md, Sessions)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import datetime
from typing import Any

import msgspec

from memanto_server.agents.repository import AgentRepository
from memanto_server.auth.cache import Owner
from memanto_server.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from memanto_server.lib.pagination import decode_cursor, encode_cursor
from memanto_server.lib.text import reject_nul
from memanto_server.lib.timeutil import from_ms, human_duration, iso_z, now_ms
from memanto_server.limits import MAX_METADATA_BYTES, MIN_HOURS
from memanto_server.ops.metrics import SESSIONS_ACTIVATED, SESSIONS_ENDED
from memanto_server.sessions.history import history_record
from memanto_server.sessions.repository import SessionRepository
from memanto_server.sessions.schemas import (
    ActivatedSession,
    CurrentSession,
    EndedSession,
    ExtendedSession,
    SessionHistory,
)
from memanto_server.sessions.store import EndRecord, LiveState, Miss, OverLifetime, SessionStore
from memanto_server.sessions.tokens import SessionClaims, TokenCodec
from memanto_server.settings import Settings

MS_PER_HOUR = 3_600_000


class HistoryCursor(msgspec.Struct, forbid_unknown_fields=True):
    created_at: datetime
    session_id: str


def new_session_id() -> str:
    return "sess_" + secrets.token_urlsafe(18)


def _hours(value: float) -> str:
    return f"{value:g}"


class SessionService:
    def __init__(
        self,
        settings: Settings,
        store: SessionStore,
        repository: SessionRepository,
        agents: AgentRepository,
        tokens: TokenCodec,
    ) -> None:
        self._settings = settings
        self._store = store
        self._repository = repository
        self._agents = agents
        self._tokens = tokens

    async def close(self) -> None:
        """Shutdown: stop waiting for Redis to accept pending take-backs."""
        await self._store.close()

    async def activate(
        self, owner: Owner, agent_id: str, duration_hours: float | None, metadata: dict[str, Any] | None
    ) -> ActivatedSession:
        hours = self._settings.session_default_hours if duration_hours is None else duration_hours
        if not MIN_HOURS <= hours <= self._settings.session_max_hours:  # NaN fails both
            raise InvalidInput.field(
                "duration_hours", f"must be one second to {_hours(self._settings.session_max_hours)} hours"
            )
        if metadata is not None and len(msgspec.json.encode(metadata)) > MAX_METADATA_BYTES:
            raise InvalidInput.field("metadata", f"must encode to at most {MAX_METADATA_BYTES} bytes of JSON")
        reject_nul(metadata, "metadata")
        created = now_ms()
        expires = created + round(hours * MS_PER_HOUR)
        hard_expiry = created + round(self._settings.session_max_total_hours * MS_PER_HOUR)
        session_id = new_session_id()

        # The row exists before the session is live, so whoever supersedes it can end it.
        await self._repository.start(owner.owner_id, agent_id, session_id, from_ms(created), from_ms(expires), metadata)
        try:
            activated = await self._store.activate(
                owner.owner_id,
                agent_id,
                session_id,
                created_ms=created,
                expires_ms=expires,
                max_expires_ms=hard_expiry,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._repository.forget(owner.owner_id, session_id))
            raise
        SESSIONS_ACTIVATED.inc()
        # Recorded before the token is handed out: Redis keeps what this activation ended
        # (with the new session) until the token is first used, so that a retry, the next
        # activation or the sweeper records it if this fails.
        for ended in activated.ended:
            await self._record_end(owner.owner_id, ended)

        claims = SessionClaims(owner_id=owner.owner_id, agent_id=agent_id, session_id=session_id)
        return ActivatedSession(
            session_id=session_id,
            session_token=self._tokens.issue(
                claims, created_ms=created, expires_ms=expires, hard_expiry_ms=hard_expiry
            ),
            agent_id=agent_id,
            status="active",
            created_at=iso_z(created),
            expires_at=iso_z(expires),
            expires_in_seconds=(expires - created) // 1000,
            superseded_session_id=activated.superseded,
        )

    async def touch(self, claims: SessionClaims, *, stored: int = 0, retrieved: int = 0) -> LiveState:
        """The token's live session (counting what the request did), or a 401 saying why not."""
        state = await self._store.touch(
            claims.owner_id, claims.agent_id, claims.session_id, stored=stored, retrieved=retrieved
        )
        if isinstance(state, Miss):
            raise await self._rejection(claims, state)
        return state

    async def current(self, claims: SessionClaims) -> CurrentSession:
        state = await self.touch(claims)
        remaining = max(0, (state.expires_ms - now_ms()) // 1000)
        return CurrentSession(
            session_id=state.session_id,
            agent_id=claims.agent_id,
            status="active",
            created_at=iso_z(state.created_ms),
            expires_at=iso_z(state.expires_ms),
            time_remaining_minutes=remaining // 60,
            time_remaining_seconds=remaining,
            memories_stored=state.stored,
            memories_retrieved=state.retrieved,
            extensions=state.extensions,
        )

    async def extend(self, claims: SessionClaims, hours: float, field: str) -> tuple[ExtendedSession, int]:
        if not MIN_HOURS <= hours <= self._settings.extend_max_hours:  # NaN fails both
            raise InvalidInput.field(field, f"must be one second to {_hours(self._settings.extend_max_hours)} hours")
        result = await self._store.extend(
            claims.owner_id, claims.agent_id, claims.session_id, round(hours * MS_PER_HOUR)
        )
        if isinstance(result, Miss):
            raise await self._rejection(claims, result)
        if isinstance(result, OverLifetime):
            room = max(0.0, (result.max_expires_ms - result.expires_ms) / MS_PER_HOUR)
            raise InvalidInput.field(
                field,
                f"at most {room:.2f} more hours may be added: a session lasts at most "
                f"{_hours(self._settings.session_max_total_hours)} hours in all",
            )
        state = result.state
        remaining = max(0, (state.expires_ms - now_ms()) // 1000)
        return (
            ExtendedSession(
                session_id=state.session_id,
                agent_id=claims.agent_id,
                previous_expires_at=iso_z(result.previous_expires_ms),
                expires_at=iso_z(state.expires_ms),
                new_expires_at=iso_z(state.expires_ms),
                hours_added=hours,
                time_remaining_minutes=remaining // 60,
                extensions=state.extensions,
            ),
            state.expires_ms,
        )

    async def deactivate(self, owner: Owner, agent_id: str, claims: SessionClaims | None) -> EndedSession:
        """End the session in Redis first (kept there as a tombstone), then record it: when
        recording fails (503), the retry finds the tombstone and records the same end."""
        if claims is not None and claims.agent_id != agent_id:
            raise Forbidden("the session token belongs to another agent", code="agent_mismatch")
        ended = await self._store.end(
            owner.owner_id, agent_id, claims.session_id if claims is not None else None, now_ms()
        )
        if isinstance(ended, Miss):
            if claims is not None:
                raise await self._deactivate_rejection(claims, ended)
            if not await self._agents.exists(owner.owner_id, agent_id):
                raise NotFound(f"agent '{agent_id}' not found", code="agent_not_found")
            raise NotFound(f"agent '{agent_id}' has no active session", code="no_active_session")
        for predecessor in ended.predecessors:
            await self._record_end(owner.owner_id, predecessor)
        recorded_now = await self._record_end(owner.owner_id, ended.record)
        if ended.before and not recorded_now:  # ended and recorded by an earlier call: a repeat
            if claims is not None:
                raise Unauthorized("the session was deactivated; activate a new one", code="session_ended")
            raise NotFound(f"agent '{agent_id}' has no active session", code="no_active_session")
        state, at = ended.record.state, ended.record.ended_ms
        duration = max(0, (at - state.created_ms) // 1000)
        return EndedSession(
            session_id=state.session_id,
            agent_id=agent_id,
            status="ended",
            end_reason="deactivated",
            started_at=iso_z(state.created_ms),
            ended_at=iso_z(at),
            duration_seconds=duration,
            duration=human_duration(duration),
            memories_stored=state.stored,
            memories_retrieved=state.retrieved,
        )

    async def end_any(self, owner_id: str, agent_id: str) -> None:
        """End whatever session the agent has (the agent is being deleted)."""
        await self._store.end(owner_id, agent_id, None, now_ms())

    async def take_back(self, claims: SessionClaims, counted: LiveState, *, stored: int = 0) -> LiveState:
        """Take back what `touch` counted for a write that stored nothing; the state after."""
        return await self._store.take_back(claims.owner_id, claims.agent_id, counted, stored=stored)

    async def live(self, owner_id: str, agent_id: str) -> LiveState | None:
        """The agent's live session, if it has one."""
        snapshot = await self._store.peek(owner_id, agent_id)
        state = snapshot.state
        return state if state is not None and state.session_id == snapshot.live_session_id else None

    async def history(self, owner: Owner, agent_id: str, limit: int, cursor: str | None) -> SessionHistory:
        position = decode_cursor(cursor, HistoryCursor)
        before = (position.created_at, position.session_id) if position else None
        rows = await self._repository.history(owner.owner_id, agent_id, before, limit + 1)
        if not rows and before is None and not await self._agents.exists(owner.owner_id, agent_id):
            raise NotFound(f"agent '{agent_id}' not found", code="agent_not_found")
        page = rows[:limit]
        # Rows still open are the live session, or one that ran out and is not yet recorded:
        # Redis has the counters of both.
        snapshot = await self._store.peek(owner.owner_id, agent_id) if any(r.end_reason is None for r in page) else None
        now = now_ms()
        records = [history_record(row, snapshot, now) for row in page]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = encode_cursor(HistoryCursor(created_at=last.created_at, session_id=last.session_id))
        return SessionHistory(agent_id=agent_id, sessions=records, count=len(records), next_cursor=next_cursor)

    async def _record_end(self, owner_id: str, ended: EndRecord) -> bool:
        """Record how a session ended; False when it was recorded before (by anyone)."""
        state = ended.state
        if await self._repository.end(
            owner_id,
            state.session_id,
            ended_at=from_ms(ended.ended_ms),
            reason=ended.reason,
            expires_at=from_ms(state.expires_ms),
            stored=state.stored,
            retrieved=state.retrieved,
            extensions=state.extensions,
        ):
            SESSIONS_ENDED.labels(ended.reason).inc()
            return True
        return False

    async def _deactivate_rejection(self, claims: SessionClaims, miss: Miss) -> Unauthorized:
        """As for any token route, except that a session deactivated and then replaced by a new
        activation says so (a retried deactivate must not hear "superseded")."""
        if miss is Miss.SUPERSEDED and await self._repository.end_reason(claims.owner_id, claims.session_id) == (
            "deactivated"
        ):
            return Unauthorized("the session was deactivated; activate a new one", code="session_ended")
        return await self._rejection(claims, miss)

    async def _rejection(self, claims: SessionClaims, miss: Miss) -> Unauthorized:
        if miss is Miss.ENDED:
            return Unauthorized("the session was deactivated; activate a new one", code="session_ended")
        if miss is Miss.SUPERSEDED:
            return Unauthorized("the session was superseded by a newer activation", code="session_superseded")
        # The agent has no live session: the history says whether it ended or ran out.
        reason = await self._repository.end_reason(claims.owner_id, claims.session_id)
        if reason == "deactivated":
            return Unauthorized("the session was deactivated; activate a new one", code="session_ended")
        if reason == "gone":  # its agent was deleted, and its history with it
            return Unauthorized("the session no longer exists; activate a new one", code="session_ended")
        if reason == "superseded":
            return Unauthorized("the session was superseded by a newer activation", code="session_superseded")
        return Unauthorized("the session has expired; activate a new one", code="session_expired")
