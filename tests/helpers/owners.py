"""Owners with API keys, and activated agents, made directly in the run's database."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
import msgspec

from memanto_server.auth.keys import display_prefix, generate_api_key, hash_api_key, new_key_id
from tests.helpers.http import API, activate, token_headers


class OwnerKey(msgspec.Struct, frozen=True):
    owner_id: str
    key_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def create_owner_key(conn: asyncpg.Connection[Any], name: str = "test-owner") -> OwnerKey:
    owner_id = await conn.fetchval("INSERT INTO owners (name) VALUES ($1) RETURNING owner_id::text", name)
    key, key_id = generate_api_key(), new_key_id()
    await conn.execute(
        "INSERT INTO api_keys (key_id, owner_id, name, key_hash, prefix) VALUES ($1, $2, $3, $4, $5)",
        key_id,
        owner_id,
        name,
        hash_api_key(key),
        display_prefix(key),
    )
    return OwnerKey(owner_id=owner_id, key_id=key_id, key=key)


def unique_agent(prefix: str = "agent") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class Live:
    """One activated agent: its id, its session and the headers its memory calls send."""

    def __init__(self, owner: OwnerKey, agent_id: str, session: dict[str, Any]) -> None:
        self.owner = owner
        self.agent_id = agent_id
        self.session = session
        self.session_id: str = session["session_id"]
        self.token: str = session["session_token"]
        self.headers = token_headers(self.token)

    def url(self, route: str) -> str:
        return f"{API}/agents/{self.agent_id}/{route}"

    @property
    def remember_url(self) -> str:
        return self.url("remember")

    @property
    def recall_url(self) -> str:
        return self.url("recall")


async def start(client: Any, owner: OwnerKey, agent_id: str | None = None) -> Live:
    """Activate `agent_id` (a new agent by default) with the owner's key."""
    agent_id = agent_id or unique_agent()
    return Live(owner, agent_id, await activate(client, owner.key, agent_id))
