"""Requests per owner to /api/v2, limited in a sliding window kept in Redis.

Every instance counts in the same Redis key per owner, so the limit holds however many
instances there are. The owner is the one of the API key or of the session token (a request
that names no valid owner is not counted: it gets its 401 from the route). A request over
the limit is a 429 `rate_limited` with `Retry-After`; every counted response carries
`RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the oldest
counted request leaves the window, which frees a slot: a refused request's `Retry-After`).

One request costs one Redis round trip: `lua/ratelimit.lua` (EVALSHA) reads the Redis
clock (so that every instance agrees on the window), drops what left the window, counts
the request if there is room and answers (allowed, remaining, reset) in one atomic step.

The window is a log of requests kept per bucket, a sixtieth of the window wide (a second of
a minute), each bucket leaving the window with its last request:

- unlike a log of every request (`limits`' moving window), its memory per owner does not
  grow with the limit: at most 64 short hash fields, where `100000/minute` would log
  100000 entries for one busy owner;
- unlike a two-counter estimate (which may let more than the limit through) or GCRA (a
  token bucket: the limit at once, then more as it refills, up to nearly twice the limit
  in one window), no window of that length ever lets more than the limit through, and
  `RateLimit-Reset` is exact for what is held: when it has passed, a slot is free;
- the price: a request is held up to one bucket longer than the window, so a request can
  be refused up to that much early.

A refused request is not counted, so a client that keeps trying while refused is let
through as soon as its oldest bucket leaves the window.

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
from importlib import resources
from typing import Any

import msgspec
from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Message, Scope
from redis.exceptions import RedisClusterException, RedisError

from memanto_server.auth.credentials import SESSION_TOKEN_HEADER, api_key_of, verified_claims
from memanto_server.errors import OUTAGE_ERRORS, MemantoError, RateLimited
from memanto_server.http import header
from memanto_server.lib.rates import Rate
from memanto_server.lib.redis_client import RedisClient, storage_redis_url
from memanto_server.lib.redis_scripts import BatchedScript
from memanto_server.lifespan import redis_from
from memanto_server.ops.metrics import DEPENDENCY_ERRORS
from memanto_server.redis_keys import rate_limit_window
from memanto_server.settings import Settings

logger = logging.getLogger("memanto.ratelimit")

_STATE_KEY = "memanto_rate_limit_headers"
WARN_EVERY_SECONDS = 10.0
BYPASS_SECONDS = 5.0  # after a failure, let requests through unchecked for this long
BUCKETS_PER_WINDOW = 60  # resolution: a request is held up to 1/60 of the window longer than the window
STORAGE_ERRORS = (RedisError, RedisClusterException, *OUTAGE_ERRORS)


class Decision(msgspec.Struct, frozen=True):
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the oldest counted request leaves the window (and frees a slot)

    @property
    def reset_seconds(self) -> int:
        """`reset_after` in the headers' whole seconds, rounded up: a client waiting that long finds the slot."""
        return max(1, math.ceil(self.reset_after))

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


def _load_script() -> str:
    return resources.files("memanto_server.ops").joinpath("lua", "ratelimit.lua").read_text()


class OwnerRateLimiter:
    """One limit, counted per owner id, in a sliding window shared through Redis."""

    def __init__(
        self, rate: Rate, redis: RedisClient, key_prefix: str, timeout: float, *, owns_client: bool = False
    ) -> None:
        self.rate = rate
        self._redis = redis
        self._owns_client = owns_client
        self._script = BatchedScript(redis, _load_script())
        window_us = rate.window_seconds * 1_000_000
        self._args = [rate.amount, window_us, window_us // BUCKETS_PER_WINDOW]
        self._key_prefix = key_prefix
        self._timeout = timeout
        self._warned_at = -math.inf
        self._bypass_until = -math.inf

    def key(self, owner_id: str) -> str:
        """The owner's hash, under a hash tag of its own: on a Redis Cluster, owners spread over the slots."""
        return rate_limit_window(self._key_prefix, owner_id, self.rate.window_seconds)

    async def hit(self, owner_id: str) -> Decision | None:
        """Count one request of the owner; None when the storage does not answer (let it pass)."""
        if time.monotonic() < self._bypass_until:
            return None
        try:
            async with asyncio.timeout(self._timeout * 2):
                allowed, remaining, reset_us = await self._script(keys=[self.key(owner_id)], args=self._args)
        except STORAGE_ERRORS as exc:
            self._unavailable(exc)
            return None
        return Decision(
            allowed=allowed == 1,
            limit=self.rate.amount,
            remaining=max(0, int(remaining)),
            reset_after=int(reset_us) / 1_000_000,
        )

    def _unavailable(self, exc: BaseException) -> None:
        DEPENDENCY_ERRORS.labels("ratelimit").inc()
        now = time.monotonic()
        self._bypass_until = now + BYPASS_SECONDS
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            logger.warning("rate limiter unavailable (%s); letting requests through", type(exc).__name__)

    async def close(self) -> None:
        """Close the Redis client if the limiter opened it (not the app's own, shared one)."""
        if not self._owns_client:
            return
        try:
            await asyncio.wait_for(self._redis.aclose(), timeout=5)
        except (TimeoutError, *STORAGE_ERRORS) as exc:
            logger.warning("the rate limiter's Redis client did not close cleanly (%s)", type(exc).__name__)


@asynccontextmanager
async def rate_limiter(app: Litestar) -> AsyncIterator[None]:
    """Lifespan: `app.state.rate_limiter`, or None when `MEMANTO_RATE_LIMIT` is empty."""
    settings: Settings = app.state.settings
    limiter = None
    if settings.rate_limit:
        redis: RedisClient = app.state.redis  # the app's own (the `backends` lifespan opened it)
        if settings.rate_limit_storage_url:
            storage_url = storage_redis_url(settings.rate_limit_storage_url)
            redis = redis_from(settings, storage_url)
        limiter = OwnerRateLimiter(
            Rate.parse(settings.rate_limit),
            redis,
            key_prefix=settings.redis_prefix,
            timeout=settings.redis_timeout,
            owns_client=redis is not app.state.redis,
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
    token = header(connection, SESSION_TOKEN_HEADER)
    if token:
        try:
            return verified_claims(connection, token).owner_id
        except MemantoError:
            pass
    key = api_key_of(connection)
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
            f"more than {limiter.rate.amount} requests per {limiter.rate.window_seconds} s; "
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
