"""Work that concurrent requests submit in the same turn of the event loop, done as one batch.

A busy worker interleaves many requests: while one waits for Redis or Postgres, others
reach the same call. Each such call costs a round trip and the client library's fixed
overhead, which at a few thousand requests a second is most of a request's CPU time
(bench/profile.py). A `Coalescer` holds the calls made in one loop turn and hands them
to its `run` function together when the loop comes round (a Redis pipeline, one
multi-row INSERT); each caller gets its own result or its own exception. A call with no
company is handed over alone, so an idle server adds no latency (one loop turn, a few
microseconds) and a busy one saves a round trip per request.

With `max_in_flight`, a `Coalescer` is also a group commit: at most that many batches run
at once, and the calls made while they run wait for one to finish and then go together.
Under load each batch then carries more calls (a commit is paid once for all of them), and
a burst of calls, cut into batches of `max_batch` that run one after the other, is answered
in waves instead of all at once at the end: the first wave's callers go on with their
requests while the next wave is being stored (bench/README.md, "Group commit"). So that slow
commits cannot hold a worker down to one batch at a time, each `BACKLOG_BATCHES` full
batches waiting let one more batch run at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 256
BACKLOG_BATCHES = 4


class Coalescer(Generic[Item, Result]):
    """`run(items)` returns one result or exception per item, in order; raising fails them all.

    `max_in_flight`: None starts a batch every loop turn, however many are running; a number
    makes it a group commit (module docstring).
    """

    def __init__(
        self,
        run: Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]],
        max_batch: int = MAX_BATCH,
        max_in_flight: int | None = None,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flush_due = False
        # The batches running, by task (strong references until done).
        self._running: dict[asyncio.Task[None], list[tuple[Item, asyncio.Future[Result]]]] = {}

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        self._schedule_flush(loop)
        try:
            return await future
        except asyncio.CancelledError:
            self._abandon_if_unwanted(future)
            raise

    def _may_start(self) -> bool:
        if self._max_in_flight is None:
            return True
        backlog = len(self._pending) // (self._max_batch * BACKLOG_BATCHES)
        return len(self._running) < self._max_in_flight + backlog

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """At the end of this loop turn, so that the turn's other calls join the batch."""
        if self._pending and not self._flush_due and self._may_start():
            self._flush_due = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        # A call whose caller went away while it waited (a request cut off) is not made.
        self._pending = [(item, future) for item, future in self._pending if not future.done()]
        while self._pending and self._may_start():
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            task = asyncio.ensure_future(self._settle(batch))
            self._running[task] = batch
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        """The calls that waited for a free place go at once: they have gathered company all
        along, and waiting one more turn would put them behind the requests that arrive in it."""
        self._running.pop(task, None)
        if self._pending and self._may_start():
            self._flush()

    def _abandon_if_unwanted(self, future: asyncio.Future[Result]) -> None:
        """Once every caller of a batch has been cancelled (a request cut off at shutdown, say),
        stop its work too, as a lone call would have been stopped, rather than let it hold a
        connection that shutdown then waits for. (Asked by a caller when it is cancelled, the
        rare case, rather than by a callback on every caller's future.)"""
        for task, batch in self._running.items():
            if any(mine is future for _, mine in batch):
                if not task.done() and all(other.cancelled() for _, other in batch):
                    task.cancel()
                return

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


async def outcome_of(call: Awaitable[Result]) -> Result | Exception:
    """The result of an awaitable, or the exception it raised, for a `run` function to return."""
    try:
        return await call
    except Exception as exc:  # handed to its caller, who raises it
        return exc
