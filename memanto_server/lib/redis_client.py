"""The one place that turns `MEMANTO_REDIS_URL` into a Redis client: one server or a Redis Cluster.

- `redis://`, `rediss://`, `unix://`: one Redis server (`redis.asyncio.Redis`);
- `redis+cluster://host:port[,host:port…]` (`rediss+cluster://` for TLS): a Redis Cluster
  (`redis.asyncio.cluster.RedisCluster`), discovered from any of the listed startup nodes.
  Credentials go before the first host (`redis+cluster://user:password@h1:7000,h2:7001`);
  there is no database number on a cluster.

Both clients get the same timeouts, retry and decoding, so the rest of the app does not
care which one it has: every multi-key script keeps its keys under one hash tag, and
PUBLISH/SUBSCRIBE are cluster-wide.

Retry: a command that fails on a connection error or a timeout is sent once more on a
fresh connection (a pooled connection may have gone stale, say after a Redis restart).
Such a command may have run, its reply lost: sending it again is blind. Lua scripts go
through `lib/redis_scripts.py`, which turns this retry off (`retry_off()`) and delivers
again itself, knowing what it sends: its state-changing scripts carry a delivery id that
makes a second delivery answer instead of applying again.

Commands are packed into the wire protocol by hiredis (C), as redis-py's synchronous client
does; its asyncio connections pack in a Python loop, argument by argument, a share of every
request that runs a script (bench/inprocess.py). What hiredis does not take (a `bytearray`,
a value of a type Redis has no form for) goes through redis-py's own packer, which answers
as it always did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import hiredis
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

RedisClient = Redis | RedisCluster
T = TypeVar("T")

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


class ClusterUrl:
    """The parts of a `redis+cluster://` URL: startup nodes, credentials, TLS."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in CLUSTER_SCHEMES:
            raise ValueError("not a redis+cluster:// URL")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        self.username = unquote(username) or None
        self.password = unquote(password) or None
        self.ssl = parts.scheme == "rediss+cluster"
        self.nodes: list[tuple[str, int]] = []
        for item in hosts.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"startup node {item.strip()!r} is not host:port")
            self.nodes.append((host.strip("[]"), int(port)))
        if parts.path not in ("", "/", "/0"):
            raise ValueError("a Redis Cluster has no database number")


class ReachableCluster(RedisCluster):
    """A `RedisCluster` whose outages look like a single server's.

    redis-py reports a cluster it cannot reach at all as a bare `RedisClusterException`
    (the connection error is its cause); the app treats connection errors as an outage
    (503 with `Retry-After`), so say it that way, and recover once a node answers again.
    """

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> RedisCluster:
        try:
            return await super().initialize(additional_startup_nodes_info, last_failed_node_name)
        except RedisClusterException as exc:
            if isinstance(exc.__cause__, (RedisConnectionError, RedisTimeoutError, OSError)):
                raise RedisConnectionError(str(exc)) from exc
            raise

    async def ping(self, **kwargs: Any) -> bool:
        """PONG from every primary (redis-py would ask one node): a primary down is an outage."""
        kwargs.setdefault("target_nodes", RedisCluster.PRIMARIES)
        return bool(await super().ping(**kwargs))


_RETRY_OFF: ContextVar[bool] = ContextVar("memanto_redis_retry_off", default=False)


@contextmanager
def retry_off() -> Iterator[None]:
    """Within the block (the current task), a failed command is not sent again: its error is raised."""
    token = _RETRY_OFF.set(True)
    try:
        yield
    finally:
        _RETRY_OFF.reset(token)


class SwitchableRetry(Retry):
    """redis-py's retry, off inside `retry_off()`: one attempt, the connection dropped, the error raised.

    Both the single-server client (per connection) and the cluster client (`get_retries()`)
    ask it at call time, so one object serves both.
    """

    def get_retries(self) -> int:
        return 0 if _RETRY_OFF.get() else super().get_retries()

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        if not _RETRY_OFF.get():
            return await super().call_with_retry(do, fail, is_retryable, with_failure_count)
        try:
            return await do()
        except self._supported_errors as error:
            await (fail(error, 1) if with_failure_count else fail(error))  # drops the connection
            raise


class HiredisPacking(AbstractConnection):
    """A connection whose commands hiredis packs (the module docstring says why)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        encoder = self.encoder
        self._hiredis_packs = encoder.encoding.lower() in ("utf-8", "utf8") and encoder.encoding_errors == "strict"

    def pack_command(self, *args: Any) -> list[bytes]:
        command = args[0]
        # A command of several words (`CONFIG GET`) is split as redis-py splits it.
        if type(command) is str:
            words = (*command.encode().split(), *args[1:])
        elif type(command) is bytes:
            words = (*command.split(), *args[1:]) if b" " in command else args
        else:
            return super().pack_command(*args)
        if self._hiredis_packs:
            try:
                return [hiredis.pack_command(words)]
            except TypeError:  # not a str, bytes, int or float: redis-py's packer says what is wrong
                pass
        return super().pack_command(*args)


class PackedConnection(HiredisPacking, Connection):
    pass


class PackedSSLConnection(HiredisPacking, SSLConnection):
    pass


class PackedUnixConnection(HiredisPacking, UnixDomainSocketConnection):
    pass


_PACKED = {Connection: PackedConnection, SSLConnection: PackedSSLConnection}
_PACKED[UnixDomainSocketConnection] = PackedUnixConnection


def is_cluster_url(url: str) -> bool:
    return url.startswith(tuple(f"{scheme}://" for scheme in CLUSTER_SCHEMES))


def open_redis(url: str, *, timeout: float, max_connections: int) -> RedisClient:
    """The Redis client for `url`; it connects on first use."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 15,
        "max_connections": max_connections,
        "retry": SwitchableRetry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "client_name": "memanto-server",
    }
    if not is_cluster_url(url):
        client = Redis.from_url(url, **options)
        pool = client.connection_pool
        pool.connection_class = _PACKED.get(pool.connection_class, pool.connection_class)
        return client
    cluster = ClusterUrl(url)
    return ReachableCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
        username=cluster.username,
        password=cluster.password,
        ssl=cluster.ssl,
        **options,
    )


async def open_pubsub(redis: RedisClient) -> PubSub:
    """A pub/sub connection that ignores (un)subscribe confirmations, on either client.

    A cluster client picks the node for its pub/sub connection from the slot map, which
    it only has once it knows the cluster; any node will do, since a PUBLISH reaches
    every node of the cluster.
    """
    if isinstance(redis, RedisCluster):
        await redis.initialize()
    return redis.pubsub(ignore_subscribe_messages=True)


def storage_redis_url(url: str) -> str:
    """`MEMANTO_RATE_LIMIT_STORAGE_URL` as a URL `open_redis` takes.

    The setting still accepts the `limits` library's spellings (`async+redis://`,
    `redis+unix://`) that it took when that library counted.
    """
    url = url.removeprefix("async+")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis", "rediss", "unix", "redis+unix", "redis+cluster", "rediss+cluster"):
        raise ValueError(f"not a Redis URL: {scheme}://")
    return f"unix://{rest}" if scheme == "redis+unix" else url
