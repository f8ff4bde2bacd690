"""What one connection may hold, against a real `memanto-server serve` over raw sockets.

Before: a 50 MB header was read whole (200, and the process grew by 48 MB), and an idle or
half-sent connection stayed open for as long as the client liked. Now the head is bounded in
size and count (431) and in time, and so is the body (408); the connection is closed after.
The server runs with short limits (given as `serve` options, to two workers), so each test is
over in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from memanto_server.settings import Settings
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.postgres import agent_row_locked, wait_until_blocked
from tests.helpers.processes import ServerProcess, settings_env

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_HEADER_BYTES = 4096
MAX_HEADERS = 20
WAIT = 15.0  # a bound for every read, far above the limits: the tests never wait on it


class Server:
    def __init__(self, process: ServerProcess, log: Path) -> None:
        self.process = process
        self.port = process.port
        self.log = log

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def rss_kib(self) -> int:
        """The memory of the server's processes (its workers and their parent), in KiB."""
        assert self.process.process is not None
        pids = [self.process.process.pid]
        for pid in pids:  # grows while it is walked: every descendant
            for task in Path(f"/proc/{pid}/task").iterdir():
                pids += [int(child) for child in (task / "children").read_text().split()]
        total = 0
        for pid in pids:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        return total


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two workers, the limits given as `serve` options (they reach every worker, pickled)."""
    log = tmp_path_factory.mktemp("limits") / "server.log"
    env = settings_env(msgspec.structs.replace(settings, http_keep_alive_timeout=2))
    options = [
        *("--max-header-bytes", str(MAX_HEADER_BYTES), "--max-headers", str(MAX_HEADERS)),
        *("--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)),
    ]
    process = ServerProcess(env, workers=2, log_path=log, options=options)
    try:
        process.start()
        process.wait_ready()
        yield Server(process, log)
    finally:
        process.stop()


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


# What a read of one response took past its end (the start of the next one, pipelined).
_read_ahead: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket) -> bytes:
    """One response (head and a body of its content-length); what came after it is kept for the next."""
    received = _read_ahead.pop(sock, b"")
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    body, _read_ahead[sock] = body[:length], body[length:]
    return head + b"\r\n\r\n" + body


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def health(server: Server) -> int:
    with server.connect() as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return status_of(read_all(sock))


def test_a_head_over_the_size_limit_is_431_and_closed(server: Server) -> None:
    for _ in range(4):  # whichever worker takes the connection
        with server.connect() as sock:
            sock.sendall(
                b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (2 * MAX_HEADER_BYTES) + b"\r\n\r\n"
            )
            response = read_all(sock)
        assert status_of(response) == 431
    assert b"application/problem+json" in response
    assert b'"code":"request_header_fields_too_large"' in response
    assert health(server) == 200


def test_a_huge_header_is_never_read_whole(server: Server) -> None:
    """A 32 MB header: refused after the first few chunks; the process does not grow with it."""
    before = server.rss_kib()
    chunk = b"a" * 65536
    with server.connect() as sock:
        sent = 0
        response = b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: ")
            while sent < 32 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        with contextlib.suppress(ConnectionResetError, OSError):
            response = read_all(sock)
    assert sent < 32 * 1024 * 1024, "the server read the whole header"
    assert not response or status_of(response) == 431
    assert server.rss_kib() - before < 8 * 1024, "the server grew with the header"
    assert health(server) == 200


def test_too_many_headers_is_431(server: Server) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 5))
    with server.connect() as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n" + headers + b"\r\n")
        response = read_all(sock)
    assert status_of(response) == 431
    assert b"headers" in response
    # As many as allowed are fine.
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS - 2))
    with server.connect() as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + headers + b"\r\n")
        assert status_of(read_all(sock)) == 200


def test_a_request_that_is_not_http_gets_a_400_problem(server: Server) -> None:
    """A NUL in a header (an Idempotency-Key, say) is refused by the HTTP parser itself."""
    for head in (
        b"POST /api/v2/agents/a/remember?content=x HTTP/1.1\r\nHost: t\r\nIdempotency-Key: a\x00b\r\n\r\n",
        b"\x00\x01\x02 not http at all\r\n\r\n",
    ):
        with server.connect() as sock:
            sock.sendall(head)
            response = read_all(sock)
        assert status_of(response) == 400
        assert b'"code":"bad_request"' in response
        assert b"application/problem+json" in response


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with server.connect() as sock:
        assert read_all(sock) == b""  # closed by the server, without an answer (WAIT bounds the read)


def test_half_sent_headers_get_408_and_the_connection_closes(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n")
        response = read_all(sock)
    assert status_of(response) == 408
    assert b'"code":"request_timeout"' in response


def test_trickled_headers_do_not_push_the_deadline_back(server: Server) -> None:
    head = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 40 + b"\r\n\r\n"
    started = time.monotonic()
    response = b""
    with server.connect() as sock:
        sock.settimeout(0.05)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for byte in head:  # a byte every 0.1 s: 6 s in all, far past the 1 s deadline
                sock.sendall(bytes([byte]))
                with contextlib.suppress(TimeoutError):
                    response += sock.recv(65536)
                if response:
                    break
                time.sleep(0.1)
        sock.settimeout(WAIT)
        response += read_all(sock)
    assert status_of(response) == 408
    assert time.monotonic() - started < len(head) * 0.1, "the whole head was trickled in"


def test_a_half_sent_body_gets_408_and_the_connection_closes(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(
            b"POST /api/v2/agents/slow-body/remember HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"content": "'
        )
        response = read_all(sock)
    assert status_of(response) == 408
    assert b"body" in response
    assert health(server) == 200


def test_the_limits_leave_ordinary_requests_alone(server: Server) -> None:
    with server.connect() as sock:
        # A body far larger than the header limit, sent with its head in one write.
        body = b'{"content": "' + b"x" * 9000 + b'"}'
        sock.sendall(
            b"POST /api/v2/agents/big-body/remember HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        assert status_of(read_response(sock)) == 401  # read whole, then refused for want of a token
        # Keep-alive: more requests on the same connection, with pauses shorter than the limits.
        for _ in range(3):
            time.sleep(0.5)
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            assert status_of(read_response(sock)) == 200
        # Two requests in one write (pipelined).
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n" * 2)
        assert status_of(read_response(sock)) == 200
        assert status_of(read_response(sock)) == 200
        # Idle past the keep-alive timeout: closed quietly.
        assert read_all(sock) == b""


async def test_a_request_read_ahead_waits_for_the_slow_one_before_it(
    server: Server, owner: OwnerKey, database_url: str, db: asyncpg.Connection[Any]
) -> None:
    """Pipelined requests: the second, read while the first is still being answered, is not timed
    out by the header limit however long the first takes (its head came whole, in time)."""
    agent = unique_agent("slow")
    activate = (
        f"POST /api/v2/agents/{agent}/activate HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {owner.key}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    with server.connect() as sock:
        sock.sendall(activate)
        assert status_of(await asyncio.to_thread(read_response, sock)) == 201  # the agent exists now
        async with agent_row_locked(database_url, owner.owner_id, agent) as holder:
            sock.sendall(activate + b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            await wait_until_blocked(db, holder)
            await asyncio.sleep(HEADER_TIMEOUT * 2)  # the first request is held past the header limit
        assert status_of(await asyncio.to_thread(read_response, sock)) == 201
        assert status_of(await asyncio.to_thread(read_response, sock)) == 200


def test_refusals_are_logged_once_without_a_traceback(server: Server) -> None:
    test_half_sent_headers_get_408_and_the_connection_closes(server)
    time.sleep(0.2)
    log = server.log.read_text()
    assert "refused a request from 127.0.0.1" in log
    assert "408 request_timeout" in log
    assert "Traceback" not in log
