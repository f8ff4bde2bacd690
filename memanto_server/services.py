"""Wiring: one instance of each store, repository and service per app process."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar.connection import ASGIConnection

from memanto_server.agents.repository import AgentRepository
from memanto_server.agents.service import AgentService
from memanto_server.auth.cache import ApiKeyCache
from memanto_server.auth.repository import ApiKeyRepository
from memanto_server.embeddings.base import Embedder
from memanto_server.embeddings.repository import EmbeddingRepository
from memanto_server.embeddings.worker import BacklogMonitor, EmbeddingWorker
from memanto_server.lib.db import Database
from memanto_server.lib.redis_client import RedisClient
from memanto_server.memories.keyed import KeyedSessions
from memanto_server.memories.lifecycle import LifecycleService
from memanto_server.memories.lifecycle_repository import LifecycleRepository
from memanto_server.memories.repository import MemoryRepository
from memanto_server.memories.semantic import EmbeddingSemantic
from memanto_server.memories.service import MemoryService
from memanto_server.sessions.expiry import ExpirySweeper
from memanto_server.sessions.repository import SessionRepository
from memanto_server.sessions.service import SessionService
from memanto_server.sessions.store import SessionStore
from memanto_server.sessions.tokens import TokenCodec
from memanto_server.settings import Settings


class Services(msgspec.Struct, kw_only=True):
    db: Database
    # A RedisClient (one server or a cluster); msgspec cannot check a union of two classes.
    redis: Any
    keys: ApiKeyCache
    tokens: TokenCodec
    sessions: SessionService
    agents: AgentService
    memories: MemoryService
    lifecycle: LifecycleService
    # MCP tools and compat routes: calls with the API key alone, in the agent's live session.
    keyed: KeyedSessions
    expiry: ExpirySweeper
    # Recall by meaning: the embedder (None when MEMANTO_EMBEDDER=none), KNN and the backlog,
    # and this process's embedding worker (None when MEMANTO_EMBEDDING_WORKER is off).
    embedder: Embedder | None = None
    embeddings: EmbeddingRepository | None = None
    embedding_worker: EmbeddingWorker | None = None
    embedding_backlog: BacklogMonitor | None = None

    async def start(self) -> None:
        await self.keys.start()
        await self.expiry.start()
        if self.embedding_backlog is not None:
            self.embedding_backlog.start()
        if self.embedding_worker is not None:
            self.embedding_worker.start()

    async def stop(self) -> None:
        if self.embedding_worker is not None:
            await self.embedding_worker.stop()
        if self.embedding_backlog is not None:
            await self.embedding_backlog.stop()
        await self.expiry.stop()
        await self.keys.stop()
        if self.embedder is not None:
            await self.embedder.close()


def build_services(
    settings: Settings, pool: asyncpg.Pool[Any], redis: RedisClient, embedder: Embedder | None = None
) -> Services:
    db = Database(pool, settings.db_acquire_timeout)
    tokens = TokenCodec(settings)
    agent_repository = AgentRepository(db)
    session_repository = SessionRepository(db)
    store = SessionStore(redis, settings.redis_prefix, round(settings.session_retain_seconds * 1000))
    sessions = SessionService(settings, store, session_repository, agent_repository, tokens)
    return Services(
        db=db,
        redis=redis,
        keys=ApiKeyCache(ApiKeyRepository(db), redis, settings.redis_prefix, settings.api_key_cache_seconds),
        tokens=tokens,
        sessions=sessions,
        agents=AgentService(agent_repository, sessions),
        memories=_memories(db, sessions, embedder),
        lifecycle=LifecycleService(LifecycleRepository(db), sessions),
        keyed=KeyedSessions(sessions, agent_repository),
        expiry=ExpirySweeper(db, session_repository, store, settings.sweep_interval_seconds),
        embedder=embedder,
        embeddings=EmbeddingRepository(db),
        embedding_worker=_worker(settings, embedder) if embedder is not None and settings.embedding_worker else None,
        embedding_backlog=_backlog(settings, db) if embedder is not None else None,
    )


def _backlog(settings: Settings, db: Database) -> BacklogMonitor:
    return BacklogMonitor(EmbeddingRepository(db), settings.embedding_backlog_seconds)


def _worker(settings: Settings, embedder: Embedder) -> EmbeddingWorker:
    return EmbeddingWorker(
        settings.database_url,
        embedder,
        batch_size=settings.embedding_batch_size,
        max_chars=settings.embedding_max_chars,
        poll_seconds=settings.embedding_poll_seconds,
        connect_timeout=settings.db_connect_timeout,
        statement_timeout=settings.db_statement_timeout,
    )


def _memories(db: Database, sessions: SessionService, embedder: Embedder | None) -> MemoryService:
    """The memory service, recalling by meaning too when there is an embedder."""
    memories = MemoryRepository(db)
    semantic = EmbeddingSemantic(embedder, EmbeddingRepository(db), memories) if embedder is not None else None
    return MemoryService(memories, sessions, semantic)


def services_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Services:
    """The app's services (the `backends` lifespan put them on `app.state`)."""
    return connection.app.state.services  # type: ignore[no-any-return]
