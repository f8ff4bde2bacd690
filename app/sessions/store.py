"""Live sessions in Redis: one hash per agent, its native TTL the session's expiry.

Every key of one agent lives under the hash tag `{owner:agent}`, and every
read-check-write is one Lua script (EVALSHA, loaded once), so the rules hold with
many app instances and on Redis Cluster.
"""

from __future__ import annotations

import enum
from importlib import resources

import msgspec
from redis.asyncio import Redis


def _load(name: str) -> str:
    return resources.files("app.sessions").joinpath("lua", name).read_text()


class LiveState(msgspec.Struct, frozen=True):
    session_id: str
    created_ms: int
    expires_ms: int
    stored: int
    retrieved: int
    extensions: int


class Miss(enum.Enum):
    """Why a session is not the live one."""

    NONE_LIVE = 0
    SUPERSEDED = -1


class OverLifetime(msgspec.Struct, frozen=True):
    expires_ms: int
    max_expires_ms: int


class Extended(msgspec.Struct, frozen=True):
    previous_expires_ms: int
    state: LiveState


class SessionStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._activate = redis.register_script(_load("activate.lua"))
        self._touch = redis.register_script(_load("touch.lua"))
        self._extend = redis.register_script(_load("extend.lua"))
        self._end = redis.register_script(_load("end.lua"))

    def key(self, owner_id: str, agent_id: str) -> str:
        return f"{self._prefix}session:{{{owner_id}:{agent_id}}}"

    async def activate(
        self, owner_id: str, agent_id: str, session_id: str, *, created_ms: int, expires_ms: int, max_expires_ms: int
    ) -> LiveState | None:
        """Make `session_id` the agent's live session; return the one it replaced."""
        old = await self._activate(
            keys=[self.key(owner_id, agent_id)], args=[session_id, created_ms, expires_ms, max_expires_ms]
        )
        if not old:
            return None
        return LiveState(old[0], *(int(v or 0) for v in old[1:]))

    async def touch(
        self, owner_id: str, agent_id: str, session_id: str, *, stored: int = 0, retrieved: int = 0
    ) -> LiveState | Miss:
        reply = await self._touch(keys=[self.key(owner_id, agent_id)], args=[session_id, stored, retrieved])
        if reply[0] != 1:
            return Miss(reply[0])
        return LiveState(session_id, *(int(v) for v in reply[1:]))

    async def extend(self, owner_id: str, agent_id: str, session_id: str, add_ms: int) -> Extended | OverLifetime | Miss:
        reply = await self._extend(keys=[self.key(owner_id, agent_id)], args=[session_id, add_ms])
        if reply[0] == -2:
            return OverLifetime(int(reply[1]), int(reply[2]))
        if reply[0] != 1:
            return Miss(reply[0])
        created, previous, new, extensions, stored, retrieved = (int(v) for v in reply[1:])
        return Extended(previous, LiveState(session_id, created, new, stored, retrieved, extensions))

    async def end(self, owner_id: str, agent_id: str, session_id: str | None = None) -> LiveState | Miss:
        reply = await self._end(keys=[self.key(owner_id, agent_id)], args=[session_id or ""])
        if reply[0] != 1:
            return Miss(reply[0])
        return LiveState(reply[1], *(int(v) for v in reply[2:]))

    async def peek(self, owner_id: str, agent_id: str) -> LiveState | None:
        """The agent's live session, if any (read-only, one command)."""
        values = await self._redis.hmget(self.key(owner_id, agent_id), ["sid", "c", "e", "s", "r", "x"])
        if values[0] is None:
            return None
        return LiveState(values[0], *(int(v) for v in values[1:]))
