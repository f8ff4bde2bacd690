"""Round trips per request: Redis commands and Postgres statements on the success path.

    python -m bench.commandstats [--requests 50] [--rate-limit '']

Starts a private `redis-server` (so that nobody else's commands are counted) and a
Postgres wire-protocol proxy in front of a database of its own, then one server worker
pointed at both. After a warm-up (pool connections open, statements prepared, API key
cached), it resets the counters and sends a fixed number of `GET /session/current` and
then of `remember` requests, one at a time, and prints per request:

- Redis: `CONFIG RESETSTAT` before, `INFO commandstats` after (the two commands of the
  measurement itself are left out);
- Postgres: what the server sends on its connections, read off the wire by the proxy:
  statements executed (`Execute`, or a simple `Query`), and round trips (`Sync`, or a
  simple `Query`), each with its SQL, so that an extra one is named.

`pg_stat_statements` is not preloaded on a stock Postgres and `pg_stat_database`
counts transactions (flushed up to seconds late, and shared with every other client),
hence the proxy: it sees exactly this server's traffic and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import secrets
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg
import httpx
import redis

from bench.common import create_key, drop_database, free_port, fresh_database, server

DB_NAME = "memanto_bench_commandstats"
API = "/api/v2"
SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104
# Commands that the measurement itself sends to Redis.
OWN_COMMANDS = {"info", "config|resetstat", "monitor", "echo"}


@dataclass
class WireCount:
    """What clients sent Postgres through the proxy since the last `reset()`."""

    statements: collections.Counter[str] = field(default_factory=collections.Counter)
    round_trips: int = 0

    @property
    def statement_count(self) -> int:
        return sum(self.statements.values())

    def reset(self) -> None:
        self.statements.clear()
        self.round_trips = 0


class PostgresProxy:
    """A TCP proxy that parses the frontend side of the Postgres protocol (no TLS).

    Counts `Execute` and simple `Query` messages as statements (keyed by their SQL, from
    the `Parse` of the bound statement) and `Sync`/`Query` as round trips.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.count = WireCount()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        back = asyncio.create_task(self._pipe(up_reader, writer))
        try:
            await self._frontend(reader, up_writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            up_writer.close()
            back.cancel()
            writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _frontend(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        # Untyped start-up messages: an SSL/GSSAPI request (answered 'N' with TLS off) then the startup.
        while True:
            head = await reader.readexactly(8)
            length, code = struct.unpack("!ii", head)
            up.write(head + await reader.readexactly(length - 8))
            await up.drain()
            if code not in (SSL_REQUEST, GSSENC_REQUEST):
                break
        statements: dict[bytes, str] = {}
        portals: dict[bytes, str] = {}
        while True:
            kind = await reader.readexactly(1)
            raw_length = await reader.readexactly(4)
            body = await reader.readexactly(struct.unpack("!i", raw_length)[0] - 4)
            if kind == b"P":
                name, rest = body.split(b"\0", 1)
                statements[name] = rest.split(b"\0", 1)[0].decode(errors="replace")
            elif kind == b"B":
                portal, statement, _ = body.split(b"\0", 2)
                portals[portal] = statements.get(statement, "?")
            elif kind == b"E":
                self.count.statements[_one_line(portals.get(body.split(b"\0", 1)[0], "?"))] += 1
            elif kind == b"Q":
                self.count.statements[_one_line(body.rstrip(b"\0").decode(errors="replace"))] += 1
                self.count.round_trips += 1
            elif kind == b"S":
                self.count.round_trips += 1
            up.write(kind + raw_length + body)
            await up.drain()


def _one_line(sql: str) -> str:
    return " ".join(sql.split())


def redis_commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last `CONFIG RESETSTAT`, leaving out the measurement's own."""
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    return {name: n for name, n in calls.items() if name not in OWN_COMMANDS and n}


@contextlib.contextmanager
def private_redis_server() -> Iterator[str]:
    """A `redis-server` of this run's own on a free loopback port (no persistence)."""
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def proxied_url(database_url: str, proxy_port: int) -> str:
    """The same database through the proxy, with TLS off (the proxy reads the protocol)."""
    parts = urlsplit(database_url)
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}127.0.0.1:{proxy_port}{parts.path}?sslmode=disable"


@contextlib.contextmanager
def postgres_proxy(database_url: str) -> Iterator[PostgresProxy]:
    """The proxy on an event loop in a thread of its own (callers may block: server start-up)."""
    parts = urlsplit(database_url)
    proxy = PostgresProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="postgres-proxy", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class RedisMonitor:
    """The commands clients send Redis (`MONITOR`), without those that scripts run inside Redis.

    Entering it resets the server's `INFO commandstats` (`CONFIG RESETSTAT`).

    `INFO commandstats` counts a script's own `redis.call`s too; MONITOR tells them apart
    (they come from `lua`), so that round trips can be counted. The measuring client's own
    commands are left out; it ends the capture with an `ECHO` of a token of its own.
    """

    def __init__(self, redis_url: str, measuring_client: redis.Redis) -> None:
        self._client = redis.Redis.from_url(redis_url)
        self._measuring = measuring_client
        self._own_addr = str(measuring_client.client_info()["addr"])
        self._sentinel = f"end-of-capture-{secrets.token_hex(4)}"
        self.commands: collections.Counter[str] = collections.Counter()
        self.in_scripts: collections.Counter[str] = collections.Counter()
        self._monitor = self._client.monitor()
        self._thread = threading.Thread(target=self._run, name="redis-monitor", daemon=True)

    def __enter__(self) -> RedisMonitor:
        self._measuring.config_resetstat()  # after this client's handshake, before MONITOR
        self._monitor.__enter__()  # MONITOR acknowledged: from here on every command is seen
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._measuring.echo(self._sentinel)
        self._thread.join(10)
        self._monitor.__exit__()
        self._client.close()

    def _run(self) -> None:
        while True:
            seen = self._monitor.next_command()
            if seen["command"] == f"ECHO {self._sentinel}":
                return
            name = seen["command"].split(" ", 1)[0].lower()
            if seen["client_type"] == "lua":
                self.in_scripts[name] += 1
            elif f"{seen['client_address']}:{seen['client_port']}" != self._own_addr:
                self.commands[name] += 1


@dataclass
class Measured:
    requests: int
    redis: dict[str, int]  # round trips: the commands that clients sent, by name
    redis_in_scripts: dict[str, int]  # what the scripts ran inside Redis (INFO commandstats less the above)
    postgres: WireCount

    @property
    def redis_calls(self) -> float:
        return sum(self.redis.values()) / self.requests

    @property
    def postgres_statements(self) -> float:
        return self.postgres.statement_count / self.requests


def measure(
    client: httpx.Client,
    redis_url: str,
    redis_client: redis.Redis,
    proxy: PostgresProxy,
    n: int,
    expect: int,
    request: httpx.Request,
) -> Measured:
    """Counts over `n` sends of `request` (each must answer `expect`), after resetting the counters."""
    time.sleep(0.2)  # let the last warm-up request's tail (pool release) finish
    proxy.count = WireCount()
    with RedisMonitor(redis_url, redis_client) as seen:
        for _ in range(n):
            response = client.send(request)
            assert response.status_code == expect, response.text
        time.sleep(0.2)
    stats = redis_commandstats(redis_client)
    sent = dict(seen.commands)
    in_scripts = {name: calls - sent.get(name, 0) for name, calls in stats.items() if calls - sent.get(name, 0) > 0}
    assert in_scripts == dict(seen.in_scripts), (stats, sent, seen.in_scripts)  # the two counts agree
    return Measured(n, sent, in_scripts, proxy.count)


def run_requests(base_url: str, redis_url: str, proxy: PostgresProxy, key: str, n: int) -> tuple[Measured, Measured]:
    """Warm up, then count `n` GET /session/current and `n` remember requests (API key and token sent)."""
    agent_id = f"commandstats-{secrets.token_hex(3)}"
    key_headers = {"Authorization": f"Bearer {key}"}
    redis_client = redis.Redis.from_url(redis_url)
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            activated = client.post(f"{API}/agents/{agent_id}/activate", headers=key_headers)
            assert activated.status_code == 201, activated.text
            headers = {**key_headers, "X-Session-Token": activated.json()["session_token"]}
            current = client.build_request("GET", f"{API}/session/current", headers=headers)
            body = {"content": "The customer prefers invoices on Fridays.", "type": "preference"}
            remember = client.build_request("POST", f"{API}/agents/{agent_id}/remember", headers=headers, json=body)
            for _ in range(5):  # warm-up: connections, prepared statements, the API key cache
                assert client.send(current).status_code == 200
                warm = client.send(remember)
                assert warm.status_code == 201, warm.text
            return (
                measure(client, redis_url, redis_client, proxy, n, 200, current),
                measure(client, redis_url, redis_client, proxy, n, 201, remember),
            )
    finally:
        redis_client.close()


def report(name: str, measured: Measured) -> None:
    n = measured.requests
    print(f"{name}: {n} requests")
    print(f"  Redis round trips (commands sent) per request: {measured.redis_calls:g}")
    for command, calls in sorted(measured.redis.items()):
        print(f"    {command:<24} {calls / n:g}")
    inside = ", ".join(f"{command} {calls / n:g}" for command, calls in sorted(measured.redis_in_scripts.items()))
    print(f"  run inside those scripts (INFO commandstats): {inside or 'nothing'}")
    pg = measured.postgres
    print(f"  Postgres statements per request: {measured.postgres_statements:g}  (round trips: {pg.round_trips / n:g})")
    for sql, count in pg.statements.most_common():
        print(f"    {count / n:g} x  {sql[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--rate-limit", default="", help="MEMANTO_RATE_LIMIT for the server (default: off)")
    args = parser.parse_args()

    url = asyncio.run(fresh_database(DB_NAME))
    try:
        _, key = asyncio.run(_key(url))
        with postgres_proxy(url) as proxy, private_redis_server() as redis_url:
            env = {"MEMANTO_REDIS_URL": redis_url, "MEMANTO_RATE_LIMIT": args.rate_limit}
            with server(proxied_url(url, proxy.port), extra_env=env) as base:
                current, remembered = run_requests(base, redis_url, proxy, key, args.requests)
        report("GET /session/current", current)
        report("POST /agents/{id}/remember", remembered)
    finally:
        asyncio.run(drop_database(DB_NAME))


async def _key(url: str) -> tuple[str, str]:
    conn = await asyncpg.connect(url)
    try:
        return await create_key(conn)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
