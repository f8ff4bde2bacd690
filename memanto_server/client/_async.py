"""`AsyncMemantoClient` and its `AsyncAgentHandle`: the asynchronous driver of the shared core.

The twin of `_sync.py`: the same operations of the core (`_core.py`), their steps performed
with `await`. Nothing about requests, answers, retries or sessions is decided here.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import httpx

from memanto_server.agents.schemas import AgentDetail, AgentList, AgentSummary
from memanto_server.client._core import ClientCore
from memanto_server.client._sessions import HandleView, SessionState
from memanto_server.client._steps import Lock, Notify, OnSession, Op, Outcome, Send, Sleep, Step, T, Unlock
from memanto_server.client._transport import DEFAULT_HEADERS
from memanto_server.client._wire import DEFAULT_BASE_URL
from memanto_server.memories.schemas import (
    AnswerResult,
    BatchStored,
    MemoryPage,
    MemoryRecord,
    RecallResult,
    RememberRequest,
    StoredMemory,
    TimelineResult,
)
from memanto_server.sessions.schemas import (
    ActivatedSession,
    CurrentSession,
    EndedSession,
    ExtendedSession,
    SessionHistory,
)


class _HeldLock:
    """A handle's session lock as one operation takes and gives it back (client calls have none)."""

    def __init__(self, lock: asyncio.Lock | None) -> None:
        self.lock = lock
        self.held = False

    async def take(self) -> None:
        if self.lock is not None:
            await self.lock.acquire()
            self.held = True

    def give(self) -> None:
        if self.held and self.lock is not None:
            self.lock.release()
            self.held = False


class AsyncMemantoClient:
    """The asynchronous twin of `MemantoClient`: same methods, awaitable."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        renew_threshold_minutes: float = 60.0,
        default_hours: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._core = ClientCore(
            base_url,
            api_key,
            max_retries=max_retries,
            renew_threshold_minutes=renew_threshold_minutes,
            default_hours=default_hours,
        )
        self._http = httpx.AsyncClient(
            base_url=self._core.base_url, timeout=timeout, transport=transport, headers=DEFAULT_HEADERS
        )

    @property
    def base_url(self) -> str:
        return self._core.base_url

    async def _run(self, op: Op[T], lock: asyncio.Lock | None = None) -> T:
        held = _HeldLock(lock)
        outcome: Outcome = None
        try:
            while True:
                try:
                    step = op.send(outcome)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                outcome = await self._perform(step, held)
        finally:
            held.give()
            op.close()

    async def _perform(self, step: Step, held: _HeldLock) -> Outcome:
        if isinstance(step, Send):
            try:
                return await self._http.request(
                    step.method, step.path, params=step.params, content=step.content, headers=step.headers
                )
            except httpx.TransportError as exc:
                return exc
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
        elif isinstance(step, Lock):
            await held.take()
        elif isinstance(step, Unlock):
            held.give()
        elif isinstance(step, Notify):
            result = step.callback(step.agent_id, step.session)
            if inspect.isawaitable(result):
                await result
        return None

    # -- life cycle

    async def close(self) -> None:
        await self._http.aclose()

    async def aclose(self) -> None:
        await self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- service

    async def health(self) -> dict[str, Any]:
        """`GET /health/ready`: its JSON, also when the server answers 503 (a backend is down)."""
        return await self._run(self._core.routes.health())

    # -- agents (API key)

    async def create_agent(self, agent_id: str, description: str | None = None) -> AgentSummary:
        return await self._run(self._core.routes.create_agent(agent_id, description))

    async def list_agents(self, limit: int = 50, cursor: str | None = None) -> AgentList:
        return await self._run(self._core.routes.list_agents(limit, cursor))

    async def get_agent(self, agent_id: str) -> AgentDetail:
        return await self._run(self._core.routes.get_agent(agent_id))

    async def delete_agent(self, agent_id: str) -> None:
        await self._run(self._core.routes.delete_agent(agent_id))

    async def agent_sessions(self, agent_id: str, limit: int = 20, cursor: str | None = None) -> SessionHistory:
        return await self._run(self._core.routes.agent_sessions(agent_id, limit, cursor))

    # -- sessions

    async def activate(self, agent_id: str, duration_hours: float | None = None) -> ActivatedSession:
        return await self._run(self._core.routes.activate(agent_id, duration_hours))

    async def current(self, token: str) -> CurrentSession:
        return await self._run(self._core.routes.current(token))

    async def extend(self, token: str, hours: float) -> ExtendedSession:
        return await self._run(self._core.routes.extend(token, hours))

    async def deactivate(self, agent_id: str, token: str | None = None) -> EndedSession:
        """End the agent's session: with its token, or (token None) whatever session it has."""
        return await self._run(self._core.routes.deactivate(agent_id, token))

    def agent(
        self,
        agent_id: str,
        *,
        token: str | None = None,
        on_session: OnSession | None = None,
        expires_at: datetime | str | None = None,
    ) -> AsyncAgentHandle:
        """A handle that keeps `agent_id`'s session alive by itself (see `AsyncAgentHandle`).
        `on_session` may be a plain function or a coroutine function."""
        return AsyncAgentHandle(self, SessionState(agent_id, token, expires_at=expires_at, on_session=on_session))


class AsyncAgentHandle(HandleView):
    """The asynchronous twin of `AgentHandle`: same session upkeep, awaitable calls."""

    def __init__(self, client: AsyncMemantoClient, state: SessionState) -> None:
        self._client = client
        self._core = client._core
        self._state = state
        self._lock = asyncio.Lock()

    async def _run(self, op: Op[T]) -> T:
        return await self._client._run(op, self._lock)

    async def ensure_session(self) -> str:
        """Make sure a live session is at hand (activating or extending as needed); its token."""
        return await self._run(self._core.upkeep.prepare(self._state))

    async def remember(
        self,
        content: str,
        *,
        type: str = "fact",
        title: str | None = None,
        tags: Sequence[str] | None = None,
        confidence: float | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        occurred_at: datetime | str | None = None,
        valid_until: datetime | str | None = None,
    ) -> StoredMemory:
        """Store a memory. `occurred_at`: the time it is about (default: now), `valid_until`:
        when it stops holding; each a datetime (naive: UTC) or an ISO-8601 string."""
        return await self._run(
            self._core.agents.remember(
                self._state,
                content,
                type=type,
                title=title,
                tags=tags,
                confidence=confidence,
                source=source,
                metadata=metadata,
                idempotency_key=idempotency_key,
                occurred_at=occurred_at,
                valid_until=valid_until,
            )
        )

    async def batch_remember(self, memories: Sequence[Mapping[str, Any] | RememberRequest]) -> BatchStored:
        return await self._run(self._core.agents.batch_remember(self._state, memories))

    async def recall(
        self,
        query: str,
        *,
        limit: int = 10,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        min_score: float | None = None,
        cursor: str | None = None,
        include_expired: bool = False,
    ) -> RecallResult:
        """Search every session's memories, best first; expired ones only with `include_expired`."""
        return await self._run(
            self._core.agents.recall(
                self._state,
                query,
                limit=limit,
                type=type,
                tags=tags,
                created_after=created_after,
                created_before=created_before,
                min_score=min_score,
                cursor=cursor,
                include_expired=include_expired,
            )
        )

    async def answer(self, question: str, limit: int = 5, *, include_expired: bool = False) -> AnswerResult:
        return await self._run(self._core.agents.answer(self._state, question, limit, include_expired=include_expired))

    # -- the memory lifecycle

    async def recall_recent(
        self,
        *,
        limit: int = 10,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        include_expired: bool = False,
        cursor: str | None = None,
    ) -> TimelineResult:
        """The memories stored most recently, newest first (expired ones with `include_expired`)."""
        return await self._run(
            self._core.agents.timeline(
                self._state,
                "recent",
                limit=limit,
                type=type,
                tags=tags,
                created_after=created_after,
                created_before=created_before,
                include_expired=include_expired,
                cursor=cursor,
            )
        )

    async def recall_as_of(
        self,
        at: datetime | str,
        *,
        limit: int = 10,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        cursor: str | None = None,
    ) -> TimelineResult:
        """What the agent knew at `at`: memories that had occurred by then and were not yet
        expired, the latest `occurred_at` first."""
        return await self._run(
            self._core.agents.timeline(
                self._state,
                "as-of",
                as_of=at,
                limit=limit,
                type=type,
                tags=tags,
                created_after=created_after,
                created_before=created_before,
                cursor=cursor,
            )
        )

    async def recall_changed_since(
        self,
        since: datetime | str,
        *,
        limit: int = 10,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        cursor: str | None = None,
    ) -> TimelineResult:
        """Memories created, changed, expired or restored after `since`, the latest change
        first; each says its `change_type`."""
        return await self._run(
            self._core.agents.timeline(
                self._state,
                "changed-since",
                since=since,
                limit=limit,
                type=type,
                tags=tags,
                created_after=created_after,
                created_before=created_before,
                cursor=cursor,
            )
        )

    async def expire(self, memory_id: str, reason: str | None = None) -> MemoryRecord:
        """Expire a memory now: kept, but left out of recall and answer (again: no change)."""
        return await self._run(self._core.agents.expire(self._state, memory_id, reason))

    async def restore(self, memory_id: str) -> MemoryRecord:
        """Make an expired memory hold again, with no end."""
        return await self._run(self._core.agents.restore(self._state, memory_id))

    async def list_memories(
        self,
        *,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> MemoryPage:
        return await self._run(
            self._core.agents.list_memories(
                self._state,
                type=type,
                tags=tags,
                limit=limit,
                cursor=cursor,
                created_after=created_after,
                created_before=created_before,
            )
        )

    async def iter_memories(
        self,
        *,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        limit: int = 100,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> AsyncIterator[MemoryRecord]:
        """Every memory, newest first, fetched `limit` at a time (following `next_cursor`)."""
        cursor: str | None = None
        while True:
            page = await self.list_memories(
                type=type,
                tags=tags,
                limit=limit,
                cursor=cursor,
                created_after=created_after,
                created_before=created_before,
            )
            for memory in page.memories:
                yield memory
            cursor = page.next_cursor
            if not cursor:
                return

    async def get_memory(self, memory_id: str) -> MemoryRecord:
        return await self._run(self._core.agents.get_memory(self._state, memory_id))

    async def update_memory(self, memory_id: str, **fields: Any) -> MemoryRecord:
        """Change any of `content`, `type`, `title`, `tags`, `confidence`, `source`, `metadata`,
        `occurred_at`, `valid_until` (`None` clears the nullable ones)."""
        return await self._run(self._core.agents.update_memory(self._state, memory_id, fields))

    async def delete_memory(self, memory_id: str) -> None:
        await self._run(self._core.agents.delete_memory(self._state, memory_id))

    async def current(self) -> CurrentSession:
        return await self._run(self._core.agents.current(self._state))

    async def extend(self, hours: float) -> ExtendedSession:
        return await self._run(self._core.agents.extend(self._state, hours))

    async def deactivate(self) -> EndedSession:
        """End the session (with the handle's token, or the API key alone when it has none).
        The next call on the handle activates a new one."""
        return await self._run(self._core.agents.deactivate(self._state))
