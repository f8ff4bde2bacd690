"""Every Redis key and channel name the service uses, built in one place.

All names start with the deployment's prefix (`MEMANTO_REDIS_PREFIX`), so several
deployments or test runs can share one Redis. A name whose data a Lua script reads and
writes together carries a hash tag (`{…}`) that keeps it in one Redis Cluster slot.
"""

from __future__ import annotations


def agent_session(prefix: str, owner_id: str, agent_id: str) -> str:
    """The hash of an agent's live (or just expired) session, under the hash tag `{owner:agent}`."""
    return f"{prefix}sess:{{{owner_id}:{agent_id}}}"


def key_revocations(prefix: str) -> str:
    """The pub/sub channel on which revoked API key ids are announced to every instance."""
    return f"{prefix}keys:revoked"


def rate_limit_window(prefix: str, owner_id: str, window_seconds: int) -> str:
    """An owner's request log for one window width, under a hash tag of its own: on a Redis
    Cluster, owners spread over the slots; a new window width starts from fresh buckets."""
    return f"{prefix}ratelimit:{{{owner_id}}}:{window_seconds}s"
