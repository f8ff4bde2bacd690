"""API key lookup with a short in-process cache, dropped everywhere on revocation.

Every instance subscribes to one Redis channel; `keys revoke` publishes the key id
there after the revocation is committed. While an instance is not subscribed (Redis
down, reconnecting) it does not trust its cache at all, so a revocation can never be
missed: it is either heard, or the cache is bypassed until the subscription is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import msgspec

from memanto_server.auth.keys import hash_api_key
from memanto_server.auth.repository import ApiKeyRepository
from memanto_server.lib.background import BackgroundLoop
from memanto_server.lib.redis_client import RedisClient, open_pubsub
from memanto_server.redis_keys import key_revocations

logger = logging.getLogger("memanto.auth")


class Owner(msgspec.Struct, frozen=True):
    owner_id: str
    key_id: str


async def publish_revocation(redis: RedisClient, prefix: str, key_id: str) -> None:
    await redis.publish(key_revocations(prefix), key_id)


class ApiKeyCache:
    def __init__(self, repository: ApiKeyRepository, redis: RedisClient, prefix: str, ttl_seconds: float) -> None:
        self._repository = repository
        self._redis = redis
        self._channel = key_revocations(prefix)
        self._ttl = ttl_seconds
        self._entries: dict[bytes, tuple[Owner, float]] = {}
        self._generation = 0  # bumped on every invalidation; guards a lookup racing a revocation
        self._subscribed = asyncio.Event()
        self._listener = BackgroundLoop("api-key-revocations", self._listen)

    async def resolve(self, api_key: str) -> Owner | None:
        """The owner of an active key, or None for an unknown or revoked one."""
        digest = hash_api_key(api_key)
        hit = self._entries.get(digest)
        if hit is not None and self._subscribed.is_set() and hit[1] > time.monotonic():
            return hit[0]
        generation = self._generation
        found = await self._repository.find_active(digest)
        if found is None:
            self._entries.pop(digest, None)
            return None
        owner = Owner(owner_id=found[1], key_id=found[0])
        if self._subscribed.is_set() and generation == self._generation:
            self._entries[digest] = (owner, time.monotonic() + self._ttl)
        return owner

    def invalidate(self, key_id: str | None = None) -> None:
        self._generation += 1
        if key_id is None:
            self._entries.clear()
            return
        for digest in [d for d, (owner, _) in self._entries.items() if owner.key_id == key_id]:
            del self._entries[digest]

    async def start(self) -> None:
        self._listener.start()

    async def stop(self) -> None:
        await self._listener.stop()
        self._subscribed.clear()

    async def wait_subscribed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _listen(self, loop: BackgroundLoop) -> None:
        delay = 0.1
        while loop.running:
            pubsub = None
            try:
                pubsub = await open_pubsub(self._redis)
                await pubsub.subscribe(self._channel)
                # Anything may have been revoked while we were not listening.
                self.invalidate()
                self._subscribed.set()
                delay = 0.1
                while loop.running:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None and message.get("type") == "message":
                        self.invalidate(str(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._subscribed.is_set():
                    logger.warning("key revocation channel lost (%s); bypassing the key cache", type(exc).__name__)
                self._subscribed.clear()
                self.invalidate()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pubsub.aclose(), timeout=2)
