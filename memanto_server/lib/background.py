"""A background loop that stops when told, even if a library swallows its cancellation.

Client libraries sometimes turn a cancellation into a connection error; a loop that
retries on connection errors would then run on and hang shutdown. Loops run here check
`running` before every retry, and `stop` gives up waiting after a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("memanto.background")


class BackgroundLoop:
    def __init__(self, name: str, body: Callable[[BackgroundLoop], Awaitable[None]]) -> None:
        self._name = name
        self._body = body
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return not self._stopping

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._body(self), name=self._name)

    async def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            logger.warning("background task %s did not stop within %.0f s", self._name, timeout)
            return
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
