"""Lua scripts run for concurrent requests in one pipeline per event-loop turn, delivered once.

Every session request runs one script (touch, extend, …). Run one by one through
redis-py, each call pays for a pool checkout, a write, a wake-up on the reply and the
client's bookkeeping, a large share of what a light request like `GET /session/current`
costs (bench/profile.py shows it). Calls made in the same turn of the
event loop are independent, so they are sent together as one non-transactional pipeline
(memanto_server/lib/coalesce.py; what ioredis calls auto-pipelining); each caller gets its own reply or
its own error, and a call with no company is sent on its own, as before (the gain is in
docs/benchmarks.md).

What does not change: each script is atomic on its own (a pipeline is not a transaction,
and none is needed: each call's rule is inside its script); Redis runs the calls in the
order they were made; a script missing from Redis's cache (after a restart) is loaded and
run again for the calls that hit it; a Redis that fails fails every call of the batch with
the error a lone call would have had (503 upstream). Works on a single server and on
Redis Cluster (redis-py sends each node its part of the pipeline).

**A lost reply.** When the connection breaks or times out after the pipeline was sent,
Redis may have run all of it, part of it or none of it. The pipeline is then sent once
more, at once, on a fresh connection (redis-py's own blind retry is off here), while new
state-changing calls on its keys wait, so that nothing of this process comes between the
two deliveries. A call made with `call_once` changes state and must count once however
often it is delivered: it gets a delivery id as its last argument, `PPPPPPnnn`: six
characters naming the pipeline that first carried it and its position there. Its script
remembers, per key, the last few pipelines and the highest position of each that ran
there, and answers a second delivery instead of applying it again (sessions/lua/common.lua).
When the second delivery fails as well, nobody can tell whether the call ran: the caller
gets `OutcomeUnknown`, carrying the delivery id, to take the call back once Redis answers.
A `BUSY` reply (a script has run past Redis's busy threshold) means the call did not run:
it is an outage like a refused connection (`RedisBusy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from memanto_server.lib.coalesce import Coalescer, outcome_of
from memanto_server.lib.redis_client import RedisClient, retry_off

# What may have lost a reply of a pipeline already sent.
_LOST = (RedisConnectionError, RedisTimeoutError)
MAX_BATCH = 256  # positions 000-255 in a delivery id


class RedisBusy(RedisConnectionError):
    """Redis refused the call (`BUSY`): another script ran past its busy threshold. It did not run."""


class OutcomeUnknown(RedisConnectionError):
    """A state-changing call was sent and its reply lost twice: it may or may not have run."""

    def __init__(self, delivery: str, cause: BaseException) -> None:
        super().__init__(f"no reply from Redis ({type(cause).__name__}); the call may have run")
        self.delivery = delivery


class _Call:
    __slots__ = ("args", "delivery", "keys", "once")

    def __init__(self, keys: Sequence[str], args: Sequence[Any], once: bool) -> None:
        self.keys = keys
        self.args = args
        self.once = once
        self.delivery = ""  # given when the call first joins a pipeline

    def arguments(self) -> Sequence[Any]:
        return [*self.args, self.delivery] if self.once else self.args


def _refused(outcome: Any) -> Any:
    """A `BUSY` reply as the outage it is; anything else as it came."""
    if isinstance(outcome, ResponseError) and str(outcome).startswith("BUSY"):
        return RedisBusy(str(outcome))
    return outcome


class BatchedScript:
    """One Lua script (EVALSHA, loaded once), batched with its other calls of the same loop turn."""

    def __init__(self, redis: RedisClient, source: str) -> None:
        self._redis = redis
        self._script = redis.register_script(source)
        self._calls: Coalescer[_Call, Any] = Coalescer(self._run, max_batch=MAX_BATCH)
        self._held: dict[str, asyncio.Event] = {}  # keys of a pipeline being delivered again

    @property
    def sha(self) -> str:
        return str(self._script.sha)

    async def __call__(self, keys: Sequence[str], args: Sequence[Any] = ()) -> Any:
        """A call that reads, or whose second delivery does no harm."""
        return await self._calls.submit(_Call(keys, args, once=False))

    async def call_once(self, keys: Sequence[str], args: Sequence[Any] = ()) -> tuple[Any, str]:
        """A state-changing call: its delivery id is appended to `args`; returns (reply, delivery id).

        Raises `OutcomeUnknown` when it cannot tell whether the call ran.
        """
        for key in keys:
            while (held := self._held.get(key)) is not None:
                await held.wait()
        call = _Call(keys, args, once=True)
        return await self._calls.submit(call), call.delivery

    async def _run(self, calls: list[_Call]) -> list[Any]:
        unnamed = [position for position, call in enumerate(calls) if call.once and not call.delivery]
        if unnamed:  # calls that only read need no delivery id (nor a read of the random source)
            pipeline = secrets.token_urlsafe(6)[:6]
            for position in unnamed:
                calls[position].delivery = f"{pipeline}{position:03d}"
        try:
            return await self._deliver(calls)
        except _LOST as lost:
            if isinstance(lost, RedisBusy):
                return [lost] * len(calls)
            if isinstance(self._redis, RedisCluster):
                # Learn the cluster's layout again first (a node may have failed over), as
                # redis-py's own retry would.
                await self._redis.aclose()
            with self._holding({key for call in calls if call.once for key in call.keys}):
                try:
                    return await self._deliver(calls)
                except _LOST as again:
                    return [OutcomeUnknown(call.delivery, again) if call.once else again for call in calls]

    async def _deliver(self, calls: list[_Call]) -> list[Any]:
        """Each call's reply or error; raises when the connection failed under the whole pipeline."""
        with retry_off():
            if len(calls) == 1:
                try:
                    return [await self._script(keys=calls[0].keys, args=calls[0].arguments())]
                except ResponseError as exc:  # the script's own error, or BUSY
                    if isinstance(busy := _refused(exc), RedisBusy):
                        raise busy from exc
                    return [exc]
            pipe = self._redis.pipeline(transaction=False)
            for call in calls:
                # execute_command: redis-py's cluster pipeline refuses `evalsha`, not the command.
                args = call.arguments()
                pipe.execute_command("EVALSHA", self._script.sha, len(call.keys), *call.keys, *args)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except ResponseError as exc:  # BUSY on the connection's handshake
                raise _refused(exc) from exc
            return [
                await self._reloaded(call) if isinstance(reply, NoScriptError) else _refused(reply)
                for call, reply in zip(calls, replies, strict=True)
            ]

    async def _reloaded(self, call: _Call) -> Any:
        """A call that found the script missing (a Redis restart): the lone call loads it and runs again."""
        outcome = await outcome_of(self._script(keys=call.keys, args=call.arguments()))
        if call.once and isinstance(outcome, _LOST) and not isinstance(outcome, RedisBusy):
            return OutcomeUnknown(call.delivery, outcome)
        return _refused(outcome)

    @contextlib.contextmanager
    def _holding(self, keys: set[str]) -> Iterator[None]:
        """New state-changing calls on `keys` wait until the block ends."""
        mine = {key: asyncio.Event() for key in keys if key not in self._held}
        self._held.update(mine)
        try:
            yield
        finally:
            for key, event in mine.items():
                del self._held[key]
                event.set()
