"""Live sessions in Redis.

Per agent, one key: the hash `sess:{owner:agent}` (the hash tag keeps an agent's session
in one Redis Cluster slot) with the session's id, times and counters: `sid`, `c`
(created), `e` (expires), `m` (latest allowed expiry), all ms since the epoch, and `s`,
`r`, `x` (memories stored, retrieved, extensions).

- The session is live while `e` is after the Redis server's clock: every script reads
  `TIME` and decides, so a session is live or not for all instances alike, whatever its
  token says;
- the hash's native TTL is `e` plus a retention window, so that an expired session's
  final counters can still be recorded (expiry sweeper, next activation) and are then
  gone by themselves.

Every read-check-write is one Lua script (EVALSHA, loaded once) over that key, so the
rules hold with many app instances and on Redis Cluster; memanto_server/lib/redis_scripts.py sends the
calls of concurrent requests in one pipeline. One key rather than a live-id key beside
the hash saves Redis's per-key overhead: the memory per live session.
"""

from __future__ import annotations

import enum
from importlib import resources

import msgspec

from memanto_server.lib.redis_client import RedisClient
from memanto_server.lib.redis_scripts import BatchedScript
from memanto_server.redis_keys import agent_session


def _load(name: str) -> str:
    return resources.files("memanto_server.sessions").joinpath("lua", name).read_text()


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


class Replaced(msgspec.Struct, frozen=True):
    """The session an activation replaced: live (`superseded`) or run out (`expired`)."""

    reason: str
    state: LiveState


class OverLifetime(msgspec.Struct, frozen=True):
    expires_ms: int
    max_expires_ms: int


class Extended(msgspec.Struct, frozen=True):
    previous_expires_ms: int
    state: LiveState


class Snapshot(msgspec.Struct, frozen=True):
    """What Redis holds for an agent: the live session id (or None) and the kept state."""

    live_session_id: str | None
    state: LiveState | None


def _state(values: list[str]) -> LiveState:
    return LiveState(values[0], *(int(v) for v in values[1:]))


class SessionStore:
    def __init__(self, redis: RedisClient, prefix: str, retain_ms: int) -> None:
        self._prefix = prefix
        self._retain_ms = retain_ms
        self._activate = BatchedScript(redis, _load("activate.lua"))
        self._touch = BatchedScript(redis, _load("touch.lua"))
        self._extend = BatchedScript(redis, _load("extend.lua"))
        self._end = BatchedScript(redis, _load("end.lua"))
        self._peek = BatchedScript(redis, _load("peek.lua"))

    def key(self, owner_id: str, agent_id: str) -> str:
        """The agent's session hash, under the hash tag `{owner:agent}`."""
        return agent_session(self._prefix, owner_id, agent_id)

    async def activate(
        self, owner_id: str, agent_id: str, session_id: str, *, created_ms: int, expires_ms: int, max_expires_ms: int
    ) -> Replaced | None:
        """Make `session_id` the agent's live session; return the session it replaced."""
        reply = await self._activate(
            keys=[self.key(owner_id, agent_id)],
            args=[session_id, created_ms, expires_ms, max_expires_ms, self._retain_ms],
        )
        return Replaced(reply[0], _state(reply[1:])) if reply else None

    async def touch(
        self, owner_id: str, agent_id: str, session_id: str, *, stored: int = 0, retrieved: int = 0
    ) -> LiveState | Miss:
        reply = await self._touch(keys=[self.key(owner_id, agent_id)], args=[session_id, stored, retrieved])
        if reply[0] != 1:
            return Miss(reply[0])
        return LiveState(session_id, *(int(v) for v in reply[1:]))

    async def extend(
        self, owner_id: str, agent_id: str, session_id: str, add_ms: int
    ) -> Extended | OverLifetime | Miss:
        reply = await self._extend(keys=[self.key(owner_id, agent_id)], args=[session_id, add_ms, self._retain_ms])
        if reply[0] == -2:
            return OverLifetime(int(reply[1]), int(reply[2]))
        if reply[0] != 1:
            return Miss(reply[0])
        created, previous, new, stored, retrieved, extensions = (int(v) for v in reply[1:])
        return Extended(previous, LiveState(session_id, created, new, stored, retrieved, extensions))

    async def end(self, owner_id: str, agent_id: str, session_id: str | None = None) -> LiveState | Miss:
        """End the live session (`session_id`, or whichever when None) and forget it.

        Its final state is returned for the caller to record; a session that has already
        run out is not live, so it stays kept for the expiry sweeper.
        """
        reply = await self._end(keys=[self.key(owner_id, agent_id)], args=[session_id or ""])
        if reply[0] != 1:
            return Miss(reply[0])
        return _state(reply[1:])

    async def peek(self, owner_id: str, agent_id: str) -> Snapshot:
        reply = await self._peek(keys=[self.key(owner_id, agent_id)])
        return Snapshot(reply[0] or None, _state(reply[1:]) if len(reply) > 1 else None)
