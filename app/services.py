"""Wiring: one instance of each store, repository and service per app process."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from app.agents.repository import AgentRepository
from app.agents.service import AgentService
from app.auth.cache import ApiKeyCache
from app.auth.repository import ApiKeyRepository
from app.db import Database
from app.memories.repository import MemoryRepository
from app.memories.service import MemoryService
from app.redis_client import RedisClient
from app.sessions.expiry import ExpirySweeper
from app.sessions.repository import SessionRepository
from app.sessions.service import SessionService
from app.sessions.store import SessionStore
from app.sessions.tokens import TokenCodec
from app.settings import Settings


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


def build_services(settings: Settings, pool: asyncpg.Pool[Any], redis: RedisClient) -> Services:
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
        memories=MemoryService(MemoryRepository(db), sessions),
        expiry=ExpirySweeper(db, session_repository, store, settings.sweep_interval_seconds),
    )
