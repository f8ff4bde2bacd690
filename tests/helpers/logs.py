"""What the app and servers logged while a test ran.

In-process: records collected by a handler of the test's own. From a server: its JSON access
lines, and credentials that must never be there.

The handler sits on the root logger and on `memanto.errors` (where unexpected errors are
logged), so it sees the records whatever the app's logging configuration does to the root's
other handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


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


ACCESS_LOGGER = "memanto.access"
# The documented fields of an access line (docs/operations.md, "Logs"), in their order.
ACCESS_FIELDS = [
    "ts",
    "level",
    "logger",
    "msg",
    "request_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "owner_id",
    "agent_id",
]


def json_entries(text: str) -> list[dict[str, Any]]:
    """Every JSON line of a log (a JSON-format log has no other kind, but a crash might)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def access_entries(text: str) -> list[dict[str, Any]]:
    return [entry for entry in json_entries(text) if entry.get("logger") == ACCESS_LOGGER]


def by_request_id(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        found.setdefault(entry["request_id"], []).append(entry)
    return found


async def wait_for_access_line(log_path: Path, request_id: str, timeout: float = 10) -> dict[str, Any]:
    """The one access line of `request_id`, once the server's log writer has written it."""
    deadline = time.monotonic() + timeout
    while True:
        found = by_request_id(access_entries(log_path.read_text())).get(request_id, [])
        if found:
            assert len(found) == 1, found
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no access line for {request_id}:\n{log_path.read_text()[-5000:]}")
        await asyncio.sleep(0.05)


def assert_no_credentials(log: str, credentials: list[str]) -> None:
    for secret in credentials:
        if secret in log:  # not `assert … in`: its message would print the log and the secret
            pytest.fail(f"a credential appears in the log (it starts {secret[:6]}…)")
