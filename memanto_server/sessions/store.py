"""Live sessions in Redis.

Per agent, one key: the hash `sess:{owner:agent}` (the hash tag keeps an agent's session
in one Redis Cluster slot), with fields

- `sid`, `c`, `e`, `m`: the session id; created, expires, latest allowed expiry (ms since the epoch);
- `s`, `r`, `x`: memories stored and retrieved, extensions;
- `k`: delivery ids of the last state-changing calls (lua/delivery.lua), so that a call
  delivered twice applies once;
- `d`: set when the session is ended (deactivated); the hash is then its tombstone;
- `p`, `q`: the session this one replaced (lua/records.lua), until this one is first used.

- The session is live while it is not ended and its expiry is after the Redis server's
  clock: every script reads `TIME` and decides, so a session is live or not for all
  instances alike, whatever its token says;
- the hash's native TTL is the expiry plus a retention window, so that an expired
  session's final counters can still be recorded (expiry sweeper, next activation) and
  are then gone by themselves. A deactivated session stays as a tombstone until then,
  so that its end can be recorded again when recording it failed (a retried deactivate,
  the next activation, the sweeper). An activation keeps the session it replaced beside
  the new one until the new one is first used: the token's use proves the activation
  answered, which it does only once it has recorded that session's end.

Every read-check-write is one Lua script (EVALSHA, loaded once) over that key, so the
rules hold with many app instances and on Redis Cluster; memanto_server/lib/redis_scripts.py sends the
calls of concurrent requests in one pipeline. One key rather than a live-id key beside
the hash saves Redis's per-key overhead: the memory per live session.

Delivered once: every state-changing script recognises a second delivery of one call (a
lost reply, delivered again) and answers it instead of applying it again. When even the
second delivery's reply is lost, the request fails (503) without knowing whether its count
or extension happened; the store then takes the call back (take_back.lua) as soon as Redis
answers, before any other state-changing call on that agent, so that the client's retry
counts once (sessions/takebacks.py).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from importlib import resources
from typing import Any

import msgspec

from memanto_server.lib.redis_client import RedisClient
from memanto_server.lib.redis_scripts import BatchedScript, OutcomeUnknown
from memanto_server.redis_keys import agent_session
from memanto_server.sessions.takebacks import PendingTakeBacks, TakeBack

RECORD_FIELDS = 8


# The helpers each script is loaded with (prepended: a script is one Lua chunk). Each helper
# is a closure made on every call, which Redis charges for, so a script gets only its own.
_HELPERS = {
    "activate.lua": ("delivery.lua", "records.lua"),
    "touch.lua": ("delivery.lua",),
    "extend.lua": ("delivery.lua",),
    "take_back.lua": ("delivery.lua",),
    "end.lua": ("records.lua",),
    "peek.lua": (),
}


def script_source(name: str) -> str:
    """The Lua source the store loads for `name` (`touch.lua`, …): its helpers, then the script."""
    lua = resources.files("memanto_server.sessions").joinpath("lua")
    return "\n".join(lua.joinpath(part).read_text() for part in (*_HELPERS[name], name))


class LiveState(msgspec.Struct, frozen=True):
    session_id: str
    created_ms: int
    expires_ms: int
    stored: int
    retrieved: int
    extensions: int
    delivery: str = ""  # the delivery id of the call that counted, if it counted anything


class Miss(enum.Enum):
    """Why a session is not the live one."""

    NONE_LIVE = 0
    SUPERSEDED = -1
    ENDED = -3


class EndRecord(msgspec.Struct, frozen=True):
    """How a session ended, as Redis knows it: for the history."""

    reason: str  # superseded, expired, deactivated
    state: LiveState
    ended_ms: int


class Activated(msgspec.Struct, frozen=True):
    """What an activation ended: the session it replaced, then any predecessor that one still carried.

    `again`: the activation had already run (its first reply was lost).
    """

    again: bool
    ended: list[EndRecord]

    @property
    def superseded(self) -> str | None:
        first = self.ended[0] if self.ended else None
        return first.state.session_id if first is not None and first.reason == "superseded" else None


class Ended(msgspec.Struct, frozen=True):
    """A deactivated session; `before`: it had been ended by an earlier call (a retry or a repeat)."""

    before: bool
    record: EndRecord
    predecessors: list[EndRecord]


class OverLifetime(msgspec.Struct, frozen=True):
    expires_ms: int
    max_expires_ms: int


class Extended(msgspec.Struct, frozen=True):
    previous_expires_ms: int
    state: LiveState


class Snapshot(msgspec.Struct, frozen=True):
    """What Redis holds for an agent: the live session id (or None), the kept state, and when
    the kept session was deactivated (a tombstone) and which session it had replaced, if known."""

    live_session_id: str | None
    state: LiveState | None
    ended_ms: int | None = None
    predecessor: EndRecord | None = None

    def end_of(self, session_id: str) -> EndRecord | None:
        """How `session_id` ended, if this snapshot tells (it is not live)."""
        state = self.state
        if state is not None and state.session_id == session_id and self.live_session_id != session_id:
            if self.ended_ms is not None:
                return EndRecord("deactivated", state, self.ended_ms)
            return EndRecord("expired", state, state.expires_ms)
        if self.predecessor is not None and self.predecessor.state.session_id == session_id:
            return self.predecessor
        return None


def _state(values: Sequence[Any]) -> LiveState:
    return LiveState(str(values[0]), *(int(v) for v in values[1:6]))


def _records(values: Sequence[Any]) -> list[EndRecord]:
    """Replies carry ended sessions as runs of 8 values: reason, sid, created, expires, s, r, x, ended."""
    return [
        EndRecord(str(values[i]), _state(values[i + 1 : i + 7]), int(values[i + 7]))
        for i in range(0, len(values) - RECORD_FIELDS + 1, RECORD_FIELDS)
    ]


class SessionStore:
    def __init__(self, redis: RedisClient, prefix: str, retain_ms: int) -> None:
        self._prefix = prefix
        self._retain_ms = retain_ms
        self._activate = BatchedScript(redis, script_source("activate.lua"))
        self._touch = BatchedScript(redis, script_source("touch.lua"))
        self._extend = BatchedScript(redis, script_source("extend.lua"))
        self._end = BatchedScript(redis, script_source("end.lua"))
        self._peek = BatchedScript(redis, script_source("peek.lua"))
        self._take_backs = PendingTakeBacks(BatchedScript(redis, script_source("take_back.lua")), retain_ms)

    def key(self, owner_id: str, agent_id: str) -> str:
        """The agent's session hash, under the hash tag `{owner:agent}`."""
        return agent_session(self._prefix, owner_id, agent_id)

    async def close(self) -> None:
        """Stop retrying the take-backs that Redis has not accepted yet (shutdown)."""
        await self._take_backs.close()

    async def activate(
        self, owner_id: str, agent_id: str, session_id: str, *, created_ms: int, expires_ms: int, max_expires_ms: int
    ) -> Activated:
        """Make `session_id` the agent's live session; return the sessions it ended, for the history."""
        key = self.key(owner_id, agent_id)
        if key in self._take_backs:
            await self._take_backs.settle(key)
        reply, _ = await self._activate.call_once(
            keys=[key], args=[session_id, created_ms, expires_ms, max_expires_ms, self._retain_ms]
        )
        return Activated(again=reply[0] == "again", ended=_records(reply[1:]))

    async def touch(
        self, owner_id: str, agent_id: str, session_id: str, *, stored: int = 0, retrieved: int = 0
    ) -> LiveState | Miss:
        """The session if live, counting what the request did (once, however often delivered)."""
        key = self.key(owner_id, agent_id)
        delivery = ""
        if not stored and not retrieved:
            reply = await self._touch(keys=[key], args=[session_id, 0, 0, ""])
        else:
            if key in self._take_backs:
                await self._take_backs.settle(key)
            try:
                reply, delivery = await self._touch.call_once(keys=[key], args=[session_id, stored, retrieved])
            except OutcomeUnknown as exc:
                self._take_backs.add(key, TakeBack(exc.delivery, False, session_id, stored, retrieved, 0))
                raise
        if reply[0] != 1:
            return Miss(reply[0])
        return LiveState(session_id, *(int(v) for v in reply[1:6]), delivery=delivery)

    async def take_back(
        self, owner_id: str, agent_id: str, counted: LiveState, *, stored: int = 0, retrieved: int = 0
    ) -> LiveState:
        """Take back counts of a call that ran (`counted`, what its touch returned): its memory
        was not stored. Returns the session's state after, or `counted` if it is gone.

        Redis not answering, the take-back is kept and made once it does.
        """
        item = TakeBack(counted.delivery, True, counted.session_id, stored, retrieved, 0)
        reply = await self._take_backs.run(self.key(owner_id, agent_id), item)
        if reply[0] != 1:
            return counted
        return LiveState(counted.session_id, *(int(v) for v in reply[1:6]))

    async def extend(
        self, owner_id: str, agent_id: str, session_id: str, add_ms: int
    ) -> Extended | OverLifetime | Miss:
        key = self.key(owner_id, agent_id)
        if key in self._take_backs:
            await self._take_backs.settle(key)
        try:
            reply, _ = await self._extend.call_once(keys=[key], args=[session_id, add_ms, self._retain_ms])
        except OutcomeUnknown as exc:
            self._take_backs.add(key, TakeBack(exc.delivery, False, session_id, 0, 0, add_ms))
            raise
        if reply[0] == -2:
            return OverLifetime(int(reply[1]), int(reply[2]))
        if reply[0] != 1:
            return Miss(reply[0])
        created, previous, new, stored, retrieved, extensions = (int(v) for v in reply[1:])
        return Extended(previous, LiveState(session_id, created, new, stored, retrieved, extensions))

    async def end(self, owner_id: str, agent_id: str, session_id: str | None, ended_ms: int) -> Ended | Miss:
        """End the live session (`session_id`, or whichever when None) at `ended_ms`.

        Its final state is returned for the caller to record. The ended session is kept as
        a tombstone: ending it again returns the same end (`before`), so that a retry can
        record what a failed attempt could not. A session that has already run out is not
        live: it stays kept for the expiry sweeper.
        """
        key = self.key(owner_id, agent_id)
        if key in self._take_backs:
            await self._take_backs.settle(key)
        reply = await self._end(keys=[key], args=[session_id or "", ended_ms])
        if reply[0] not in (1, 2):
            return Miss(reply[0])
        record, *predecessors = _records(reply[1:])
        return Ended(before=reply[0] == 2, record=record, predecessors=predecessors)

    async def peek(self, owner_id: str, agent_id: str) -> Snapshot:
        reply = await self._peek(keys=[self.key(owner_id, agent_id)])
        if len(reply) == 1:
            return Snapshot(None, None)
        ended, predecessor, rest = reply[7], reply[8], reply[9]
        return Snapshot(
            reply[0] or None,
            _state(reply[1:7]),
            int(ended) if ended else None,
            _unpack_record(predecessor, rest) if predecessor else None,
        )


def _unpack_record(p: str, q: str) -> EndRecord:
    """The p/q fields of a hash (common.lua, pack_record) as a record."""
    reason, session_id, created = p.split()
    expires, ended, stored, retrieved, extensions = q.split()
    return EndRecord(
        reason,
        LiveState(session_id, int(created), int(expires), int(stored), int(retrieved), int(extensions)),
        int(ended),
    )
