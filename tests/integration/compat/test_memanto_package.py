"""The published `memanto` 0.2.30 (from PyPI, unchanged) against a server process of this repo.

Its CLI and its `Memanto` SDK run as subprocesses with `MOORCHEH_BASE_URL` at
`<server>/moorcheh/v1` and `MOORCHEH_API_KEY` an API key of this server, each with a HOME of
its own, and a network that holds nothing but loopback (every other connection or lookup is
refused and recorded; proxy-honouring clients are sent to a recorder). What they store is
checked in this server: under the key's owner, agent `{id}` for namespace `memanto_agent_{id}`.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers.http import API, activate, token_headers
from tests.helpers.memanto_package import MemantoHome, ProxyRecorder, proxy_recorder
from tests.helpers.owners import OwnerKey, unique_agent

pytestmark = pytest.mark.slow


@pytest.fixture
def proxy() -> Iterator[ProxyRecorder]:
    with proxy_recorder() as recorder:
        yield recorder


def home_of(
    memanto_package: Path, tmp_path: Path, server_url: str, owner: OwnerKey, proxy: ProxyRecorder
) -> MemantoHome:
    return MemantoHome(memanto_package, tmp_path / "home", server_url, owner.key, proxy)


def run(user: MemantoHome, *args: str) -> str:
    done = user.cli(*args)
    assert done.returncode == 0, f"memanto {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def assert_stayed_home(user: MemantoHome, proxy: ProxyRecorder) -> None:
    assert user.outside_attempts() == []
    assert proxy.requests == []


async def memories_of(db: asyncpg.Connection[Any], owner: OwnerKey, agent_id: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT * FROM memories WHERE owner_id = $1 AND agent_id = $2 ORDER BY created_at",
        uuid.UUID(owner.owner_id),
        agent_id,
    )


async def test_the_memanto_cli_keeps_its_memories_here(
    memanto_package: Path,
    server_url: str,
    owner: OwnerKey,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
    proxy: ProxyRecorder,
) -> None:
    user = home_of(memanto_package, tmp_path, server_url, owner, proxy)
    # `memanto status` checks the "local REST API" of its config: this server's GET /health.
    port = server_url.rsplit(":", 1)[1]
    (user.home / ".memanto").mkdir(exist_ok=True)
    (user.home / ".memanto" / "config.yaml").write_text(f"memanto:\n  server:\n    url: 127.0.0.1\n    port: {port}\n")
    status = run(user, "status")
    assert "online" in status
    assert "connected" in status
    assert "offline" not in status
    agent = unique_agent("cli")
    assert "created successfully" in run(user, "agent", "create", agent)
    async with httpx.AsyncClient(base_url=server_url, timeout=15) as http:
        shown = await http.get(f"{API}/agents/{agent}", headers=owner.headers)
        assert shown.status_code == 200, shown.text  # the namespace is this owner's agent
        # A REST client holds the agent's session: memanto's calls run in it, never superseding it.
        session = await activate(http, owner.key, agent)

        stored = run(
            user, "remember", "The customer prefers email over phone", "--type", "preference", "--tags", "contact,email"
        )
        assert "Memory stored successfully" in stored
        memory_id = stored.split("Memory ID:")[1].split()[0]
        run(user, "remember", "Invoices go out on the first of the month", "--tags", "billing")

        (first, second) = await memories_of(db, owner, agent)
        assert first["idempotency_key"] == f"moorcheh:{memory_id}"
        assert (first["type"], first["content"], first["tags"]) == (
            "preference",
            "The customer prefers email over phone",
            ["contact", "email"],
        )
        assert first["title"] is None  # memanto's title was its content
        assert json.loads(first["metadata"])["provenance"] == "explicit_statement"
        assert {first["session_id"], second["session_id"]} == {session["session_id"]}

        recalled = run(user, "recall", "email")
        assert "The customer prefers email over phone" in recalled
        assert memory_id in recalled
        assert "Invoices" not in recalled
        recent = run(user, "recall", "--recent")
        assert recent.index("Invoices go out") < recent.index("The customer prefers email")
        answered = run(user, "answer", "How does the customer want to be contacted?")
        assert "prefers email over phone" in answered

        current = await http.get(f"{API}/session/current", headers=token_headers(session["session_token"]))
        assert current.status_code == 200, current.text
        assert current.json()["memories_stored"] == 2
        assert current.json()["memories_retrieved"] >= 1 + 2 + 1

        assert "deleted" in run(user, "agent", "delete", agent, "--force", "--delete-memories")
        gone = await http.get(f"{API}/agents/{agent}", headers=owner.headers)
        assert gone.status_code == 404, gone.text
    assert await memories_of(db, owner, agent) == []
    assert_stayed_home(user, proxy)


SDK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from memanto import Memanto

    agent_id = sys.argv[1] if len(sys.argv) > 1 else {agent!r}
    memanto = Memanto(agent_id=agent_id)
    out = {{}}
    out["remember"] = memanto.remember("Alex prefers oat milk.", type=None, tags=["drinks"])
    out["batch"] = memanto.batch_remember([
        {{"content": "Alex's birthday is on May 3rd.", "type": "event"}},
        {{"content": "Alex works from Lisbon.", "type": "fact", "tags": ["location"]}},
    ])
    out["recall"] = memanto.recall("oat milk", limit=5)
    out["recall_typed"] = memanto.recall("Alex", type="event")
    out["recent"] = memanto.recall_recent(limit=10)
    out["answer"] = memanto.answer("Which milk does Alex prefer?")
    out["deleted"] = memanto.delete_agent(delete_memories=True)
    print(json.dumps(out, default=str))
    """
)


async def test_the_memanto_sdk_keeps_its_memories_here(
    memanto_package: Path,
    server_url: str,
    owner: OwnerKey,
    db: asyncpg.Connection[Any],
    tmp_path: Path,
    proxy: ProxyRecorder,
) -> None:
    user = home_of(memanto_package, tmp_path, server_url, owner, proxy)
    agent = unique_agent("sdk")
    done = user.python(SDK_SCRIPT.format(agent=agent))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert out["remember"]["status"] == "queued"  # as Moorcheh answers an upload
    assert out["batch"]["successful"] == 2
    drinks = out["recall"]["memories"]
    assert drinks[0]["content"] == "Alex prefers oat milk."
    assert drinks[0]["tags"] == ["drinks"]
    assert drinks[0]["id"] == out["remember"]["memory_id"]  # the id memanto gave it
    assert drinks[0]["type"] == out["remember"]["type"]  # `type=None`: memanto infers one
    assert [m["type"] for m in out["recall_typed"]["memories"]] == ["event"]
    assert {m["content"] for m in out["recent"]["memories"]} == {
        "Alex prefers oat milk.",
        "Alex's birthday is on May 3rd.",
        "Alex works from Lisbon.",
    }
    assert "oat milk" in out["answer"]["answer"]
    assert out["deleted"]["memories_deleted"] is True
    # Everything it stored was this owner's, under the agent; the delete took it all.
    assert await db.fetchval("SELECT count(*) FROM agents WHERE agent_id = $1", agent) == 0
    assert await memories_of(db, owner, agent) == []
    assert_stayed_home(user, proxy)
