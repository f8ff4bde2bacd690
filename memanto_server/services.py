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
from memanto_server.lib.db import Database
from memanto_server.lib.redis_client import RedisClient
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
    expiry: ExpirySweeper

    async def start(self) -> None:
        await self.keys.start()
        await self.expiry.start()

    async def stop(self) -> None:
        await self.expiry.stop()
        await self.keys.stop()


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
        expiry=ExpirySweeper(db, session_repository, store, settings.sweep_interval_seconds),
    )


def _memories(db: Database, sessions: SessionService, embedder: Embedder | None) -> MemoryService:
    """The memory service, recalling by meaning too when there is an embedder."""
    memories = MemoryRepository(db)
    semantic = EmbeddingSemantic(embedder, EmbeddingRepository(db), memories) if embedder is not None else None
    return MemoryService(memories, sessions, semantic)


def services_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Services:
    """The app's services (the `backends` lifespan put them on `app.state`)."""
    return connection.app.state.services  # type: ignore[no-any-return]
