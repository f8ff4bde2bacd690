"""Requests per owner to /api/v2, limited in a moving window kept in Redis (the `limits` library).

Every instance counts in the same Redis keys, so the limit holds however many instances
there are. The owner is the one of the API key or of the session token (a request that
names no valid owner is not counted: it gets its 401 from the route). A request over the
limit is a 429 `rate_limited` with `Retry-After`; every counted response carries
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds until a slot frees).

The limiter must not take the API down: when its storage does not answer, requests pass
(fail open) and, for a few seconds, are not even tried against it (so that a storage which
hangs does not slow every request down by a timeout); a warning is logged at most every few
seconds, and each failure is counted in `memanto_dependency_errors_total{backend="ratelimit"}`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from limits import RateLimitItem, parse
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Message, Scope

from app.auth.guards import SESSION_TOKEN_HEADER, api_key_of, verified_claims
from app.errors import OUTAGE_ERRORS, MemantoError, RateLimited
from app.ops.metrics import DEPENDENCY_ERRORS
from app.settings import Settings

logger = logging.getLogger("memanto.ratelimit")

_STATE_KEY = "memanto_rate_limit_headers"
WARN_EVERY_SECONDS = 10.0
BYPASS_SECONDS = 5.0  # after a failure, let requests through unchecked for this long


class Decision(msgspec.Struct, frozen=True):
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the oldest counted request leaves the window

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


def storage_uri(url: str) -> tuple[str, dict[str, Any]]:
    """The `limits` URI (and extra client options) for a memanto Redis URL."""
    if url.startswith("async+"):
        return url, {}
    scheme, sep, rest = url.partition("://")
    mapped = {
        "redis": "async+redis",
        "rediss": "async+rediss",
        "unix": "async+redis+unix",
        "redis+unix": "async+redis+unix",
        "redis+cluster": "async+redis+cluster",
        "rediss+cluster": "async+redis+cluster",
    }
    if not sep or scheme not in mapped:
        raise ValueError(f"not a Redis URL: {scheme}://")
    return f"{mapped[scheme]}://{rest}", {"ssl": True} if scheme == "rediss+cluster" else {}


class OwnerRateLimiter:
    """One limit, counted per owner id, in a moving window shared through Redis."""

    def __init__(self, limit: str, storage_url: str, key_prefix: str, timeout: float) -> None:
        self.item: RateLimitItem = parse(limit)
        uri, options = storage_uri(storage_url)
        options |= {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        storage_class = RedisClusterStorage if uri.startswith("async+redis+cluster") else RedisStorage
        self._storage = storage_class(
            uri, implementation="redispy", key_prefix=key_prefix, wrap_exceptions=True, **options
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._timeout = timeout
        self._warned_at = -math.inf
        self._bypass_until = -math.inf

    async def hit(self, owner_id: str) -> Decision | None:
        """Count one request of the owner; None when the storage does not answer (let it pass)."""
        if time.monotonic() < self._bypass_until:
            return None
        try:
            async with asyncio.timeout(self._timeout * 2):
                allowed = await self._limiter.hit(self.item, owner_id)
                stats = await self._limiter.get_window_stats(self.item, owner_id)
        except (StorageError, *OUTAGE_ERRORS) as exc:
            self._unavailable(exc)
            return None
        return Decision(
            allowed=allowed,
            limit=self.item.amount,
            remaining=max(0, stats.remaining),
            reset_seconds=max(1, math.ceil(stats.reset_time - time.time())),
        )

    def _unavailable(self, exc: BaseException) -> None:
        DEPENDENCY_ERRORS.labels("ratelimit").inc()
        now = time.monotonic()
        self._bypass_until = now + BYPASS_SECONDS
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            cause = exc.storage_error if isinstance(exc, StorageError) else exc
            logger.warning("rate limiter unavailable (%s); letting requests through", type(cause).__name__)

    async def close(self) -> None:
        client = self._storage.bridge.get_connection()
        try:
            await asyncio.wait_for(client.aclose(), timeout=5)
        except (TimeoutError, *OUTAGE_ERRORS) as exc:
            logger.warning("the rate limiter's Redis client did not close cleanly (%s)", type(exc).__name__)


@asynccontextmanager
async def rate_limiter(app: Litestar) -> AsyncIterator[None]:
    """Lifespan: `app.state.rate_limiter`, or None when `MEMANTO_RATE_LIMIT` is empty."""
    settings: Settings = app.state.settings
    limiter = None
    if settings.rate_limit:
        limiter = OwnerRateLimiter(
            settings.rate_limit,
            settings.rate_limit_storage_url or settings.redis_url,
            key_prefix=f"{settings.redis_prefix}ratelimit",
            timeout=settings.redis_timeout,
        )
    app.state.rate_limiter = limiter
    try:
        yield
    finally:
        if limiter is not None:
            await limiter.close()


async def _owner_id(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The caller's owner, as cheaply as it can be told; None when the credentials name none."""
    services = connection.app.state.services
    token = connection.headers.get(SESSION_TOKEN_HEADER)
    if token:
        try:
            return verified_claims(connection, token).owner_id
        except MemantoError:
            pass
    key = api_key_of(connection.headers)
    owner = await services.keys.resolve(key) if key else None
    return owner.owner_id if owner is not None else None


async def enforce_rate_limit(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Route guard for /api/v2: count the request against its owner, or refuse it with a 429."""
    limiter: OwnerRateLimiter | None = connection.app.state.rate_limiter
    if limiter is None:
        return
    owner_id = await _owner_id(connection)
    if owner_id is None:
        return
    state = connection.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    state["owner_id"] = owner_id  # for the access line, refused or not
    decision = await limiter.hit(owner_id)
    if decision is None:
        return
    if not decision.allowed:
        raise RateLimited(
            f"more than {limiter.item.amount} requests per {limiter.item.get_expiry()} s; "
            f"retry in {decision.reset_seconds} s",
            headers={"Retry-After": str(decision.reset_seconds), **decision.headers()},
        )
    state[_STATE_KEY] = decision.headers()


async def add_rate_limit_headers(message: Message, scope: Scope) -> None:
    """`before_send` hook: the RateLimit-* headers on every response that was counted and let through."""
    if message["type"] == "http.response.start":
        headers = scope.get("state", {}).get(_STATE_KEY)
        if headers:
            message["headers"] = [  # type: ignore[typeddict-unknown-key]
                *message.get("headers", ()),
                *((name.lower().encode(), value.encode()) for name, value in headers.items()),
            ]
