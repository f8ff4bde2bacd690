"""`memanto mcp`: the tools over stdio, forwarded to a server process, with the real `mcp` client SDK.

The stdio server runs as a subprocess (`python -m memanto_server.cli.memanto mcp`, what
`memanto mcp` runs) with the CLI's configuration, as a desktop client starts it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner
from mcp import Client, StdioServerParameters

import memanto_server.cli.memanto.config_file as cli_config
from memanto_server.cli.memanto.mcp import mcp_command
from tests.helpers.mcp import TOOL_NAMES, call, fails
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import free_port

pytestmark = pytest.mark.slow


def cli_env(home: Path, **values: str) -> dict[str, str]:
    """The environment of a desktop client's `memanto mcp`: a config folder of its own, nothing of ours."""
    return {"MEMANTO_HOME": str(home), "PATH": "/usr/bin:/bin", **values}


@contextlib.asynccontextmanager
async def stdio_client(env: dict[str, str]) -> AsyncIterator[Client]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "memanto_server.cli.memanto", "mcp"], env=env)
    async with Client(params, mode="legacy") as client:
        yield client


async def test_the_tools_over_stdio_reach_the_server_of_the_environment(
    server_url: str, owner: OwnerKey, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    env = cli_env(tmp_path, MEMANTO_URL=server_url, MEMANTO_API_KEY=owner.key)
    agent = unique_agent("stdio")
    async with stdio_client(env) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == TOOL_NAMES
        await call(client, "create_agent", {"agent_id": agent})
        stored = await call(client, "remember", {"agent_id": agent, "content": "Desk plants need water on Fridays"})
        found = await call(client, "recall", {"agent_id": agent, "query": "plants"})
        assert [m["memory_id"] for m in found["memories"]] == [stored["memory_id"]]
        problem = await fails(client, "get_agent", {"agent_id": unique_agent("nobody")}, "agent_not_found")
        assert problem["status"] == 404
        await fails(client, "remember", {"agent_id": agent, "content": ""}, "validation_error")
    owner_of = await db.fetchval("SELECT owner_id::text FROM memories WHERE agent_id = $1", agent)
    assert owner_of == owner.owner_id


async def test_the_tools_over_stdio_use_the_cli_config_file(
    server_url: str, owner: OwnerKey, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "memanto"
    monkeypatch.setenv("MEMANTO_HOME", str(home))
    with cli_config.update() as config:  # as `memanto config set server_url …` / `api_key …` leave it
        config.server_url = server_url
        config.api_key = owner.key
    async with stdio_client(cli_env(home)) as client:
        assert (await call(client, "list_agents"))["agents"] == []
        agent = unique_agent("configured")
        await call(client, "create_agent", {"agent_id": agent})
        assert [a["agent_id"] for a in (await call(client, "list_agents"))["agents"]] == [agent]


async def test_a_server_out_of_reach_is_an_error_that_says_so(tmp_path: Path) -> None:
    env = cli_env(tmp_path, MEMANTO_URL=f"http://127.0.0.1:{free_port()}", MEMANTO_API_KEY="mk_unused")
    async with stdio_client(env) as client:
        result = await client.call_tool("recall", {"agent_id": "a", "query": "x"})
        assert result.is_error
        assert result.structured_content["code"] == "server_unreachable"  # type: ignore[index]
        assert "cannot reach the Memanto server" in result.structured_content["detail"]  # type: ignore[index]
        with pytest.raises(Exception, match="cannot reach the Memanto server"):
            await client.list_tools()


def test_without_a_key_it_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        mcp_command, [], env={"MEMANTO_HOME": str(tmp_path), "MEMANTO_API_KEY": "", "MOORCHEH_API_KEY": ""}
    )
    assert result.exit_code == 2
    assert "no API key" in result.output
