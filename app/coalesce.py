"""Work that concurrent requests submit in the same turn of the event loop, done as one batch.

A busy worker interleaves many requests: while one waits for Redis or Postgres, others
reach the same call. Each such call costs a round trip and the client library's fixed
overhead, which at a few thousand requests a second is most of a request's CPU time
(bench/profile.py). A `Coalescer` holds the calls made in one loop turn and hands them
to its `run` function together when the loop comes round (a Redis pipeline, one
multi-row INSERT); each caller gets its own result or its own exception. A call with no
company is handed over alone, so an idle server adds no latency (one loop turn, a few
microseconds) and a busy one saves a round trip per request.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 256


class Coalescer(Generic[Item, Result]):
    """`run(items)` returns one result or exception per item, in order; raising fails them all."""

    def __init__(
        self, run: Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]], max_batch: int = MAX_BATCH
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running: set[asyncio.Task[None]] = set()  # strong references until done

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((item, future))
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        task = asyncio.ensure_future(self._settle(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        for _, future in batch:
            future.add_done_callback(functools.partial(_abandon_if_unwanted, task, batch))

    async def _settle(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            outcomes = await self._run([item for item, _ in batch])
        except Exception as exc:  # the whole batch failed: each caller gets the error
            outcomes = [exc] * len(batch)
        except BaseException:  # cancelled (shutting down): no caller may wait for ever
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller went away (cancelled): no one to answer
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _abandon_if_unwanted(task: asyncio.Task[None], batch: list[tuple[Any, asyncio.Future[Any]]], _: object) -> None:
    """Once every caller of a batch has been cancelled (a request cut off at shutdown, say),
    stop its work too, as a lone call would have been stopped, rather than let it hold a
    connection that shutdown then waits for."""
    if not task.done() and all(future.cancelled() for _, future in batch):
        task.cancel()


async def outcome_of(call: Awaitable[Result]) -> Result | Exception:
    """The result of an awaitable, or the exception it raised, for a `run` function to return."""
    try:
        return await call
    except Exception as exc:  # handed to its caller, who raises it
        return exc
