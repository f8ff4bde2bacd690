"""A TCP proxy between the app and a backend of the test's own, which the test makes fail on cue.

It runs its own event loop in a thread, so it keeps forwarding whatever the test's loop
does (a blocking call, a subprocess). Faults, each for connections made through it:

- `cut_after_reply(marker, times)`: the next `times` times a client sends bytes containing
  `marker`, they are forwarded, and when the backend answers, the connection is closed
  instead of the answer being forwarded: the backend did the work, the client never
  learns of it (a reply lost to a network cut);
- `cut_before(marker, times)`: such bytes are not forwarded; the connection is closed
  (the backend goes away just as the request is sent);
- `block()` / `unblock()`: every connection is closed, and new ones are closed as soon as
  they are accepted, until `unblock()` (the backend is down);
- `inject(data)`: `data` reaches every client connection as if the backend had sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


@dataclass
class _Fault:
    marker: bytes
    times: int
    after_reply: bool


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    cut_on_reply: bool = False
    cut: bool = False  # by a fault: dropped at once, as a network cut would
    tail: bytes = b""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        """Dropped (a cut), or closed in order: what one side sent before it closed still
        reaches the other, as on a direct connection (a backend still runs it)."""
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                if self.cut:
                    writer.transport.abort()
                else:
                    writer.close()


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.cuts = 0  # connections cut by a fault so far
        self._faults: list[_Fault] = []
        self._blocked = False
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    # Control, from the test's thread.

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=5)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def cut_after_reply(self, marker: bytes, times: int = 1) -> None:
        with self._lock:
            self._faults.append(_Fault(marker, times, after_reply=True))

    def cut_before(self, marker: bytes, times: int = 1) -> None:
        with self._lock:
            self._faults.append(_Fault(marker, times, after_reply=False))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def armed(self) -> int:
        """How many cuts are still to happen."""
        with self._lock:
            return sum(fault.times for fault in self._faults)

    def block(self) -> None:
        self._blocked = True
        self._call(self._close_all)

    def unblock(self) -> None:
        self._blocked = False

    def inject(self, data: bytes) -> None:
        def send() -> None:
            for link in list(self._links):
                link.client.write(data)

        self._call(send)

    def connections(self) -> int:
        return len(self._links)

    def upstream_ports(self) -> list[int]:
        """The local ports of the proxy's connections to the backend (to find them on its side)."""
        return [link.server.get_extra_info("sockname")[1] for link in list(self._links)]

    def _call(self, function: object) -> None:
        async def run() -> None:
            function()  # type: ignore[operator]

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=5)

    # The proxy, in its own loop.

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._close_all()
        tasks = [task for link in list(self._links) for task in link.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _close_all(self) -> None:
        for link in list(self._links):
            link.cut = True
            link.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._blocked:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._to_server(link, reader)),
            asyncio.create_task(self._to_client(link, up_reader)),
        ]
        await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        link.close()
        for task in link.tasks:
            task.cancel()
        self._links.discard(link)

    def _fault_for(self, link: _Link, data: bytes) -> _Fault | None:
        seen = link.tail + data
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.marker in seen:
                    fault.times -= 1
                    link.tail = b""
                    return fault
        longest = max((len(fault.marker) for fault in self._faults), default=1)
        link.tail = seen[-(longest - 1) :] if longest > 1 else b""
        return None

    async def _to_server(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                fault = self._fault_for(link, data)
                if fault is not None and not fault.after_reply:
                    self.cuts += 1
                    link.cut = True
                    return
                if fault is not None:
                    link.cut_on_reply = True
                link.server.write(data)
                await link.server.drain()

    async def _to_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if link.cut_on_reply:
                    self.cuts += 1
                    link.cut = True
                    return
                link.client.write(data)
                await link.client.drain()


@contextlib.contextmanager
def tcp_proxy(upstream_host: str, upstream_port: int) -> Iterator[TcpProxy]:
    """A started `TcpProxy` to `upstream_host:upstream_port`, stopped on the way out."""
    proxy = TcpProxy(upstream_host, upstream_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def through(url: str, proxy: TcpProxy) -> str:
    """`url` (postgresql://… or redis://…) with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def upstream_of(url: str) -> tuple[str, int]:
    """The host and port `url` names (a proxy's upstream)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (6379 if parts.scheme.startswith("redis") else 5432)


# What Postgres sends each connection on a fast shutdown (or pg_terminate_backend) before it
# closes it: ErrorResponse, FATAL, SQLSTATE 57P01.
_SHUTDOWN_FIELDS = b"SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0"
POSTGRES_ADMIN_SHUTDOWN = b"E" + (len(_SHUTDOWN_FIELDS) + 4).to_bytes(4, "big") + _SHUTDOWN_FIELDS
