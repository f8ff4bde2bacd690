"""`MemantoClient` (sync) and `AsyncMemantoClient` (async): thin drivers of the shared core.

Each public method hands an operation of `memanto_server.client._core` to its driver, which performs
the I/O steps the operation asks for. Nothing about requests, answers, retries or sessions
is decided here.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import httpx

from memanto_server.agents.schemas import AgentDetail, AgentList, AgentSummary
from memanto_server.client._core import (
    DEFAULT_BASE_URL,
    USER_AGENT,
    ClientCore,
    Lock,
    Notify,
    OnSession,
    Op,
    Outcome,
    Send,
    SessionState,
    Sleep,
    T,
    Unlock,
    normalize_base_url,
)
from memanto_server.memories.schemas import (
    AnswerResult,
    BatchStored,
    MemoryPage,
    MemoryRecord,
    RecallResult,
    RememberRequest,
    StoredMemory,
)
from memanto_server.sessions.schemas import (
    ActivatedSession,
    CurrentSession,
    EndedSession,
    ExtendedSession,
    SessionHistory,
)

API_KEY_ENV = ("MEMANTO_API_KEY", "MOORCHEH_API_KEY")


def resolve_api_key(api_key: str | None) -> str | None:
    """The given key, else `MEMANTO_API_KEY`, else `MOORCHEH_API_KEY` (empty values skipped)."""
    if api_key:
        return api_key
    for name in API_KEY_ENV:
        if value := os.environ.get(name, "").strip():
            return value
    return None


def _core(
    base_url: str,
    api_key: str | None,
    max_retries: int,
    renew_threshold_minutes: float,
    default_hours: float | None,
) -> ClientCore:
    return ClientCore(
        normalize_base_url(base_url),
        resolve_api_key(api_key),
        max_retries=max_retries,
        renew_threshold_minutes=renew_threshold_minutes,
        default_hours=default_hours,
    )


_DEFAULT_HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json"}


# ---------------------------------------------------------------------------------------
# Sync


class MemantoClient:
    """A synchronous client of a Memanto server.

    >>> with MemantoClient("http://127.0.0.1:8000", api_key="mk_…") as client:
    ...     agent = client.agent("customer-support")
    ...     agent.remember("Customer prefers email", type="preference")
    ...     agent.recall("how to contact the customer").memories
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        renew_threshold_minutes: float = 60.0,
        default_hours: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._core = _core(base_url, api_key, max_retries, renew_threshold_minutes, default_hours)
        self._http = httpx.Client(
            base_url=self._core.base_url, timeout=timeout, transport=transport, headers=_DEFAULT_HEADERS
        )

    @property
    def base_url(self) -> str:
        return self._core.base_url

    def _run(self, op: Op[T], lock: threading.Lock | None = None) -> T:
        held = False
        outcome: Outcome = None
        try:
            while True:
                try:
                    step = op.send(outcome)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                outcome = None
                if isinstance(step, Send):
                    try:
                        outcome = self._http.request(
                            step.method, step.path, params=step.params, content=step.content, headers=step.headers
                        )
                    except httpx.TransportError as exc:
                        outcome = exc
                elif isinstance(step, Sleep):
                    time.sleep(step.seconds)
                elif isinstance(step, Lock):
                    if lock is not None:
                        lock.acquire()
                        held = True
                elif isinstance(step, Unlock):
                    if held and lock is not None:
                        lock.release()
                        held = False
                elif isinstance(step, Notify):
                    step.callback(step.agent_id, step.session)
        finally:
            if held and lock is not None:
                lock.release()
            op.close()

    # -- life cycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- service

    def health(self) -> dict[str, Any]:
        """`GET /health/ready`: its JSON, also when the server answers 503 (a backend is down)."""
        return self._run(self._core.health())

    # -- agents (API key)

    def create_agent(self, agent_id: str, description: str | None = None) -> AgentSummary:
        return self._run(self._core.create_agent(agent_id, description))

    def list_agents(self, limit: int = 50, cursor: str | None = None) -> AgentList:
        return self._run(self._core.list_agents(limit, cursor))

    def get_agent(self, agent_id: str) -> AgentDetail:
        return self._run(self._core.get_agent(agent_id))

    def delete_agent(self, agent_id: str) -> None:
        self._run(self._core.delete_agent(agent_id))

    def agent_sessions(self, agent_id: str, limit: int = 20, cursor: str | None = None) -> SessionHistory:
        return self._run(self._core.agent_sessions(agent_id, limit, cursor))

    # -- sessions

    def activate(self, agent_id: str, duration_hours: float | None = None) -> ActivatedSession:
        return self._run(self._core.activate(agent_id, duration_hours))

    def current(self, token: str) -> CurrentSession:
        return self._run(self._core.current(token))

    def extend(self, token: str, hours: float) -> ExtendedSession:
        return self._run(self._core.extend(token, hours))

    def deactivate(self, agent_id: str, token: str | None = None) -> EndedSession:
        """End the agent's session: with its token, or (token None) whatever session it has."""
        return self._run(self._core.deactivate(agent_id, token))

    def agent(
        self,
        agent_id: str,
        *,
        token: str | None = None,
        on_session: OnSession | None = None,
        expires_at: datetime | str | None = None,
    ) -> AgentHandle:
        """A handle that keeps `agent_id`'s session alive by itself (see `AgentHandle`)."""
        return AgentHandle(self, SessionState(agent_id, token, expires_at=expires_at, on_session=on_session))


class AgentHandle:
    """One agent's memories through a session the handle manages.

    Before each call it activates a session when it has none, and extends the session when
    less than `renew_threshold_minutes` is left (activating a new one when the extension
    is refused as over the session's lifetime). When the server says the session is gone
    (`session_expired`, `session_ended`, `session_superseded`, `invalid_token`), it
    activates a new session once and retries the call. `on_session(agent_id, session)` is
    called with the `ActivatedSession` of every activation and the `ExtendedSession` of
    every extension, so a caller can keep the token.
    """

    def __init__(self, client: MemantoClient, state: SessionState) -> None:
        self._client = client
        self._core = client._core
        self._state = state
        self._lock = threading.Lock()

    def _run(self, op: Op[T]) -> T:
        return self._client._run(op, self._lock)

    @property
    def agent_id(self) -> str:
        return self._state.agent_id

    @property
    def token(self) -> str | None:
        return self._state.token

    @property
    def session_id(self) -> str | None:
        return self._state.session_id

    @property
    def expires_at(self) -> datetime | None:
        return self._state.expires_at

    def ensure_session(self) -> str:
        """Make sure a live session is at hand (activating or extending as needed); its token."""
        return self._run(self._core.prepare(self._state))

    def remember(
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
    ) -> StoredMemory:
        return self._run(
            self._core.h_remember(
                self._state,
                content,
                type=type,
                title=title,
                tags=tags,
                confidence=confidence,
                source=source,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    def batch_remember(self, memories: Sequence[Mapping[str, Any] | RememberRequest]) -> BatchStored:
        return self._run(self._core.h_batch_remember(self._state, memories))

    def recall(
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
    ) -> RecallResult:
        return self._run(
            self._core.h_recall(
                self._state,
                query,
                limit=limit,
                type=type,
                tags=tags,
                created_after=created_after,
                created_before=created_before,
                min_score=min_score,
                cursor=cursor,
            )
        )

    def answer(self, question: str, limit: int = 5) -> AnswerResult:
        return self._run(self._core.h_answer(self._state, question, limit))

    def list_memories(
        self,
        *,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> MemoryPage:
        return self._run(
            self._core.h_list_memories(
                self._state,
                type=type,
                tags=tags,
                limit=limit,
                cursor=cursor,
                created_after=created_after,
                created_before=created_before,
            )
        )

    def iter_memories(
        self,
        *,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        limit: int = 100,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> Iterator[MemoryRecord]:
        """Every memory, newest first, fetched `limit` at a time (following `next_cursor`)."""
        cursor: str | None = None
        while True:
            page = self.list_memories(
                type=type,
                tags=tags,
                limit=limit,
                cursor=cursor,
                created_after=created_after,
                created_before=created_before,
            )
            yield from page.memories
            cursor = page.next_cursor
            if not cursor:
                return

    def get_memory(self, memory_id: str) -> MemoryRecord:
        return self._run(self._core.h_get_memory(self._state, memory_id))

    def update_memory(self, memory_id: str, **fields: Any) -> MemoryRecord:
        """Change any of `content`, `type`, `title`, `tags`, `confidence`, `source`, `metadata`
        (`None` clears the nullable ones)."""
        return self._run(self._core.h_update_memory(self._state, memory_id, fields))

    def delete_memory(self, memory_id: str) -> None:
        self._run(self._core.h_delete_memory(self._state, memory_id))

    def current(self) -> CurrentSession:
        return self._run(self._core.h_current(self._state))

    def extend(self, hours: float) -> ExtendedSession:
        return self._run(self._core.h_extend(self._state, hours))

    def deactivate(self) -> EndedSession:
        """End the session (with the handle's token, or the API key alone when it has none).
        The next call on the handle activates a new one."""
        return self._run(self._core.h_deactivate(self._state))


# ---------------------------------------------------------------------------------------
# Async


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
        self._core = _core(base_url, api_key, max_retries, renew_threshold_minutes, default_hours)
        self._http = httpx.AsyncClient(
            base_url=self._core.base_url, timeout=timeout, transport=transport, headers=_DEFAULT_HEADERS
        )

    @property
    def base_url(self) -> str:
        return self._core.base_url

    async def _run(self, op: Op[T], lock: asyncio.Lock | None = None) -> T:
        held = False
        outcome: Outcome = None
        try:
            while True:
                try:
                    step = op.send(outcome)
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
                outcome = None
                if isinstance(step, Send):
                    try:
                        outcome = await self._http.request(
                            step.method, step.path, params=step.params, content=step.content, headers=step.headers
                        )
                    except httpx.TransportError as exc:
                        outcome = exc
                elif isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                elif isinstance(step, Lock):
                    if lock is not None:
                        await lock.acquire()
                        held = True
                elif isinstance(step, Unlock):
                    if held and lock is not None:
                        lock.release()
                        held = False
                elif isinstance(step, Notify):
                    result = step.callback(step.agent_id, step.session)
                    if inspect.isawaitable(result):
                        await result
        finally:
            if held and lock is not None:
                lock.release()
            op.close()

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
        return await self._run(self._core.health())

    # -- agents (API key)

    async def create_agent(self, agent_id: str, description: str | None = None) -> AgentSummary:
        return await self._run(self._core.create_agent(agent_id, description))

    async def list_agents(self, limit: int = 50, cursor: str | None = None) -> AgentList:
        return await self._run(self._core.list_agents(limit, cursor))

    async def get_agent(self, agent_id: str) -> AgentDetail:
        return await self._run(self._core.get_agent(agent_id))

    async def delete_agent(self, agent_id: str) -> None:
        await self._run(self._core.delete_agent(agent_id))

    async def agent_sessions(self, agent_id: str, limit: int = 20, cursor: str | None = None) -> SessionHistory:
        return await self._run(self._core.agent_sessions(agent_id, limit, cursor))

    # -- sessions

    async def activate(self, agent_id: str, duration_hours: float | None = None) -> ActivatedSession:
        return await self._run(self._core.activate(agent_id, duration_hours))

    async def current(self, token: str) -> CurrentSession:
        return await self._run(self._core.current(token))

    async def extend(self, token: str, hours: float) -> ExtendedSession:
        return await self._run(self._core.extend(token, hours))

    async def deactivate(self, agent_id: str, token: str | None = None) -> EndedSession:
        """End the agent's session: with its token, or (token None) whatever session it has."""
        return await self._run(self._core.deactivate(agent_id, token))

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


class AsyncAgentHandle:
    """The asynchronous twin of `AgentHandle`: same session management, awaitable calls."""

    def __init__(self, client: AsyncMemantoClient, state: SessionState) -> None:
        self._client = client
        self._core = client._core
        self._state = state
        self._lock = asyncio.Lock()

    async def _run(self, op: Op[T]) -> T:
        return await self._client._run(op, self._lock)

    @property
    def agent_id(self) -> str:
        return self._state.agent_id

    @property
    def token(self) -> str | None:
        return self._state.token

    @property
    def session_id(self) -> str | None:
        return self._state.session_id

    @property
    def expires_at(self) -> datetime | None:
        return self._state.expires_at

    async def ensure_session(self) -> str:
        """Make sure a live session is at hand (activating or extending as needed); its token."""
        return await self._run(self._core.prepare(self._state))

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
    ) -> StoredMemory:
        return await self._run(
            self._core.h_remember(
                self._state,
                content,
                type=type,
                title=title,
                tags=tags,
                confidence=confidence,
                source=source,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        )

    async def batch_remember(self, memories: Sequence[Mapping[str, Any] | RememberRequest]) -> BatchStored:
        return await self._run(self._core.h_batch_remember(self._state, memories))

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
    ) -> RecallResult:
        return await self._run(
            self._core.h_recall(
                self._state,
                query,
                limit=limit,
                type=type,
                tags=tags,
                created_after=created_after,
                created_before=created_before,
                min_score=min_score,
                cursor=cursor,
            )
        )

    async def answer(self, question: str, limit: int = 5) -> AnswerResult:
        return await self._run(self._core.h_answer(self._state, question, limit))

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
            self._core.h_list_memories(
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
        return await self._run(self._core.h_get_memory(self._state, memory_id))

    async def update_memory(self, memory_id: str, **fields: Any) -> MemoryRecord:
        """Change any of `content`, `type`, `title`, `tags`, `confidence`, `source`, `metadata`
        (`None` clears the nullable ones)."""
        return await self._run(self._core.h_update_memory(self._state, memory_id, fields))

    async def delete_memory(self, memory_id: str) -> None:
        await self._run(self._core.h_delete_memory(self._state, memory_id))

    async def current(self) -> CurrentSession:
        return await self._run(self._core.h_current(self._state))

    async def extend(self, hours: float) -> ExtendedSession:
        return await self._run(self._core.h_extend(self._state, hours))

    async def deactivate(self) -> EndedSession:
        """End the session (with the handle's token, or the API key alone when it has none).
        The next call on the handle activates a new one."""
        return await self._run(self._core.h_deactivate(self._state))
