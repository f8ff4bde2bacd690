"""The real `mcp` client SDK against a server's `/mcp`, and reading its tool results."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

TOOL_NAMES = {
    "remember",
    "batch_remember",
    "recall",
    "recall_recent",
    "recall_as_of",
    "recall_changed_since",
    "answer",
    "create_agent",
    "list_agents",
    "get_agent",
    "delete_agent",
    "activate",
    "session_info",
    "extend",
    "deactivate",
}


@contextlib.asynccontextmanager
async def mcp_client(
    base_url: str, key: str | None, *, header: str = "authorization", mode: str = "auto"
) -> AsyncIterator[Client]:
    """An initialized MCP client session on `base_url`/mcp with the owner's key.

    `header` is `authorization` (`Bearer …`) or `x-api-key`; `mode` is the SDK's: `auto` (the
    2026-07-28 protocol, discovered) or `legacy` (the initialize handshake).
    """
    headers: dict[str, str] = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if header == "authorization" else {"X-Api-Key": key}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(f"{base_url}/mcp", http_client=http)
        async with Client(transport, mode=mode) as client:  # type: ignore[arg-type]
            yield client


def payload(result: CallToolResult) -> dict[str, Any]:
    """A successful tool result's structured content (the same JSON as its text)."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    text = result.content[0].text  # type: ignore[union-attr]
    assert json.loads(text) == result.structured_content
    return result.structured_content


def problem(result: CallToolResult, code: str) -> dict[str, Any]:
    """A tool error's problem: its code and detail, as structured content and as text."""
    assert result.is_error, result.content
    text = result.content[0].text  # type: ignore[union-attr]
    body = json.loads(text)
    assert body == result.structured_content
    assert body["code"] == code, body
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body  # type: ignore[no-any-return]


async def call(client: Client, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return payload(await client.call_tool(name, arguments or {}))


async def fails(client: Client, name: str, arguments: dict[str, Any], code: str) -> dict[str, Any]:
    return problem(await client.call_tool(name, arguments), code)
