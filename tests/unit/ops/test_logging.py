"""The log writer and the formats, on a file of the test's own (no server).

The writer takes lines on the caller's thread without writing, writes them in batches from
its own thread, keeps their order, never drops one, and writes what is pending when it
stops; the formats redact credentials and keep a text record on its own line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memanto_server.ops.logging import (
    AccessRenderer,
    JsonFormatter,
    LineWriter,
    TextFormatter,
    WriterHandler,
    escape_controls,
)

KEY = "mk_" + "A1b2C3d4" * 4
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlX2hlcmU"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        yield fd, path
    finally:
        os.close(fd)


def entry(request_id: str, *, method: str = "GET", agent: str | None = "agent-1") -> tuple:
    return (1_700_000_000.25, request_id, method, "/api/v2/session/current", 200, 0.0012345, "owner-1", agent)


def test_without_its_thread_the_writer_writes_at_once(log_file: tuple[int, Path]) -> None:
    fd, path = log_file
    writer = LineWriter(fd)
    writer.put(b"first\n")
    assert path.read_bytes() == b"first\n"


def test_with_its_thread_put_only_queues_and_the_thread_writes_in_order(log_file: tuple[int, Path]) -> None:
    fd, path = log_file
    writer = LineWriter(fd, interval=0.05)
    writer.render = AccessRenderer(use_json=True)
    writer.start()
    try:
        for n in range(500):
            writer.put(entry(f"r{n}") if n % 2 else f"line {n}\n".encode())
        assert path.read_bytes() == b""  # nothing written on the caller's thread
        deadline = time.monotonic() + 5
        while path.read_bytes().count(b"\n") < 500 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        writer.stop()
    lines = path.read_text().splitlines()
    assert len(lines) == 500
    for n, line in enumerate(lines):
        assert (json.loads(line)["request_id"] == f"r{n}") if n % 2 else (line == f"line {n}"), (n, line)


def test_stop_writes_everything_pending(log_file: tuple[int, Path]) -> None:
    fd, path = log_file
    writer = LineWriter(fd, interval=60)  # the thread would not wake up on its own
    writer.render = AccessRenderer(use_json=True)
    writer.start()
    for n in range(1000):
        writer.put(entry(f"r{n}"))
    writer.stop()
    assert not writer.running
    assert [json.loads(line)["request_id"] for line in path.read_text().splitlines()] == [f"r{n}" for n in range(1000)]
    writer.put(b"after stop\n")  # written at once again
    assert path.read_text().endswith("after stop\n")


def test_start_and_stop_nest(log_file: tuple[int, Path]) -> None:
    fd, _ = log_file
    writer = LineWriter(fd)
    writer.start()
    writer.start()
    writer.stop()
    assert writer.running  # one user left
    writer.stop()
    assert not writer.running


def test_beyond_max_pending_the_caller_writes_rather_than_drops(log_file: tuple[int, Path]) -> None:
    fd, path = log_file
    writer = LineWriter(fd, interval=60, max_pending=10)
    writer.start()
    try:
        for n in range(25):
            writer.put(f"{n}\n".encode())
        assert path.read_text().splitlines() == [str(n) for n in range(22)]  # two batches of 11
    finally:
        writer.stop()
    assert path.read_text().splitlines() == [str(n) for n in range(25)]


def test_an_error_record_is_written_at_once_after_what_came_before(log_file: tuple[int, Path]) -> None:
    fd, path = log_file
    writer = LineWriter(fd, interval=60)
    writer.render = AccessRenderer(use_json=True)
    handler = WriterHandler(writer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("memanto.test.writer")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    writer.start()
    try:
        writer.put(entry("before"))
        logger.info("queued")
        assert path.read_text() == ""
        logger.error("it broke")
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line.get("request_id") or line["msg"] for line in lines] == ["before", "queued", "it broke"]
    finally:
        writer.stop()
        logger.removeHandler(handler)


def test_observers_see_every_entry_on_the_writers_thread_and_a_failing_one_stops_nothing(
    log_file: tuple[int, Path],
) -> None:
    fd, path = log_file
    writer = LineWriter(fd, interval=0.02)
    writer.render = AccessRenderer(use_json=True)
    seen: list[tuple[str, str]] = []

    def broken(_: list[tuple]) -> None:
        raise RuntimeError("observer bug")

    def record(entries: list[tuple]) -> None:
        seen.extend((e[1], threading.current_thread().name) for e in entries)

    writer.observers += [record, broken]
    writer.start()
    try:
        for n in range(100):
            writer.put(entry(f"r{n}"))
        writer.put(b"a record\n")
        deadline = time.monotonic() + 5
        while len(seen) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [(f"r{n}", "memanto-log-writer") for n in range(100)]
        writer.put(entry("after"))
    finally:
        writer.stop()
    text = path.read_text()
    assert [json.loads(line)["request_id"] for line in text.splitlines() if line.startswith("{")] == [
        *(f"r{n}" for n in range(100)),
        "after",
    ]
    assert "a record\n" in text
    assert "observer bug" in text  # said, not swallowed


def test_without_access_lines_entries_are_observed_but_not_written(log_file: tuple[int, Path]) -> None:
    fd, path = log_file
    writer = LineWriter(fd)
    writer.render = AccessRenderer(use_json=True, access=False)
    seen: list[tuple] = []
    writer.observers.append(seen.extend)
    writer.put(entry("quiet"))
    writer.put(b"a warning\n")
    assert [e[1] for e in seen] == ["quiet"]
    assert path.read_text() == "a warning\n"


def test_json_access_line_fields_and_redaction() -> None:
    render = AccessRenderer(use_json=True)
    line = json.loads(render([entry(KEY, method="GET", agent=f"x{TOKEN}")]))
    assert line == {
        "ts": "2023-11-14T22:13:20.250Z",
        "level": "info",
        "logger": "memanto.access",
        "msg": "GET /api/v2/session/current 200",
        "request_id": "[redacted]",
        "method": "GET",
        "route": "/api/v2/session/current",
        "status": 200,
        "duration_ms": 1.23,
        "owner_id": "owner-1",
        "agent_id": "x[redacted]",
    }


def test_text_access_line_escapes_and_redacts() -> None:
    render = AccessRenderer(use_json=False)
    text = render([entry("r1", method="GET", agent=f"a\nFORGED {KEY}\x1b[2J\u2028")]).decode()
    assert text.count("\n") == 1
    assert text.endswith("agent_id=a\\nFORGED [redacted]\\x1b[2J\\u2028\n")
    assert " INFO    memanto.access: GET /api/v2/session/current 200 request_id=r1 " in text


def test_text_records_stay_on_their_line_and_tracebacks_are_indented() -> None:
    try:
        raise ValueError(f"bad input\n2026-01-01 00:00:00,000 ERROR   forged: {KEY}")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("memanto.test", logging.WARNING, __file__, 1, "agent %s", ("a\rb\x00",), exc_info)
    record.agent_id = "x\ny"
    text = TextFormatter().format(record)
    first, *rest = text.splitlines()
    assert first.endswith("WARNING memanto.test: agent a\\rb\\x00 agent_id=x\\ny")
    assert rest[0] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in rest)
    assert "    2026-01-01 00:00:00,000 ERROR   forged: [redacted]" in rest
    assert KEY not in text


def test_escape_controls() -> None:
    assert escape_controls("plain text, é and 漢字") == "plain text, é and 漢字"
    assert escape_controls("a\tb\x7f\x85\u2029") == "a\\tb\\x7f\\x85\\u2029"
