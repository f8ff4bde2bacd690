"""Take-backs of counted calls that Redis has not confirmed yet.

A counting call (a `remember`'s count, a `recall`'s retrieved count, an extension) whose
replies were lost twice may or may not have run: the request was answered 503 and the
client will send it again. For the retry to count once, the first call is taken back
(take_back.lua: undone if it ran, marked so that it never runs if it has not). While
Redis does not answer, take-backs wait here, per agent key and oldest first, and are
made:

- before any other state-changing call on the same key (the store calls `settle` first),
  so they land while Redis still remembers the call they take back;
- by a background task, retrying with backoff until Redis answers, for keys nobody uses.

They live in this process only: a process that stops meanwhile loses them, and those
counts stay one too high. At most MAX_PENDING wait; beyond that the oldest are dropped
(with a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from memanto_server.lib.redis_scripts import BatchedScript

logger = logging.getLogger("memanto.sessions.takebacks")

MAX_PENDING = 10_000
FIRST_DELAY, MAX_DELAY = 0.05, 2.0
_UNANSWERED = (RedisConnectionError, RedisTimeoutError, OSError)


class TakeBack(msgspec.Struct, frozen=True):
    delivery: str  # of the call to take back
    certain: bool  # it ran (its reply was seen); else unknown
    session_id: str
    stored: int
    retrieved: int
    extend_ms: int


class PendingTakeBacks:
    def __init__(self, script: BatchedScript, retain_ms: int) -> None:
        self._script = script
        self._retain_ms = retain_ms
        self._pending: dict[str, list[TakeBack]] = {}
        self._count = 0
        self._drainer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: str) -> bool:
        """Whether take-backs wait for `key` (cheap: asked before every counting call)."""
        return key in self._pending

    def add(self, key: str, item: TakeBack) -> None:
        """Keep `item` until Redis confirms it."""
        self._pending.setdefault(key, []).append(item)
        self._count += 1
        while self._count > MAX_PENDING:
            oldest_key = next(iter(self._pending))
            self._discard(oldest_key, self._pending[oldest_key][0])
            logger.warning("too many take-backs wait for Redis; dropped one (a count stays one too high)")
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain(), name="session-take-backs")

    async def run(self, key: str, item: TakeBack) -> Any:
        """Make `item` now (after those waiting for the key); kept for later if Redis does not answer."""
        await self.settle(key)
        try:
            return await self._send(key, item)
        except _UNANSWERED:
            self.add(key, item)
            raise

    async def settle(self, key: str) -> None:
        """Make the take-backs waiting for `key`; raises if Redis does not answer (they stay)."""
        items = self._pending.get(key)
        if not items:
            return
        for item in list(items):
            try:
                await self._send(key, item)
            except RedisError as exc:
                if isinstance(exc, _UNANSWERED):
                    raise
                logger.error("take-back refused by Redis, dropped: %s", exc)
            self._discard(key, item)

    async def close(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        if self._count:
            logger.warning("%d take-back(s) not made: Redis did not answer before shutdown", self._count)

    async def _send(self, key: str, item: TakeBack) -> Any:
        args = [item.delivery, "1" if item.certain else "0", item.session_id]
        return await self._script(
            keys=[key], args=[*args, item.stored, item.retrieved, item.extend_ms, self._retain_ms]
        )

    def _discard(self, key: str, item: TakeBack) -> None:
        items = self._pending.get(key)
        if items and item in items:
            items.remove(item)
            self._count -= 1
            if not items:
                del self._pending[key]

    async def _drain(self) -> None:
        delay = FIRST_DELAY
        while self._pending:
            try:
                for key in list(self._pending):
                    await self.settle(key)
            except _UNANSWERED:
                pass
            except Exception:
                logger.exception("take-backs failed; retrying")
            else:
                continue
            await asyncio.sleep(delay)
            delay = min(MAX_DELAY, delay * 2)
