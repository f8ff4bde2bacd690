"""What the app logged while a test ran: records collected by a handler of the test's own.

The handler sits on the root logger and on `memanto.errors` (where unexpected errors are
logged), so it sees the records whatever the app's logging configuration does to the root's
other handlers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record not in self.records:
            self.records.append(record)

    def errors(self) -> list[str]:
        """Every record at ERROR or above, or with a traceback: a bad input must leave none."""
        return [
            f"{r.name}: {r.getMessage()}" for r in self.records if r.levelno >= logging.ERROR or r.exc_info is not None
        ]


@contextlib.contextmanager
def collected_logs() -> Iterator[Collected]:
    handler = Collected()
    loggers = [logging.getLogger(), logging.getLogger("memanto.errors")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
