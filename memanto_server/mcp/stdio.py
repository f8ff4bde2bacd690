"""`memanto mcp`: the Memanto MCP tools over stdio, for desktop clients (Claude Desktop, Cursor, …).

Desktop clients start a local MCP server and talk to it over stdin/stdout. This one holds no
tools of its own: it serves the tools of a Memanto server's `/mcp`, forwarding each call there
(Streamable HTTP, with the official SDK's client) with the `memanto` CLI's configuration:
`server_url` and `api_key` of `~/.memanto/config.json`, overridden by `MEMANTO_URL` and
`MEMANTO_API_KEY` (or `MOORCHEH_API_KEY`). So it works against a remote server, and the tools,
their schemas and their rules are the server's own, whichever version it runs.

Run as `memanto mcp` (`memanto_server/cli/memanto/mcp.py` reads the configuration and calls
`serve`). Stdout carries the protocol alone; anything else goes to stderr.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import mcp_types as types
import msgspec
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from memanto_server.lib.version import VERSION

logger = logging.getLogger("memanto.mcp.stdio")

INTERNAL_ERROR = -32603
TIMEOUT_SECONDS = 30.0


def _unreachable(url: str, exc: BaseException) -> str:
    return f"cannot reach the Memanto server at {url} ({type(exc).__name__}); check `memanto config show`"


class RemoteTools:
    """The tools of a server's `/mcp`, each request on a client session of its own.

    The server is stateless, so a session costs one discovery round trip; and a session opened
    and closed within the request's own task never outlives a failure or a server restart.
    """

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self._headers = {"Authorization": f"Bearer {api_key}"}

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[Client]:
        async with httpx2.AsyncClient(headers=self._headers, timeout=TIMEOUT_SECONDS) as http:
            transport = streamable_http_client(self.url, http_client=http)
            async with Client(transport) as client:  # type: ignore[arg-type]
                yield client

    async def list_tools(self, _ctx: Any, _params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        try:
            async with self._session() as client:
                listed = await client.list_tools()
        except Exception as exc:
            raise MCPError(INTERNAL_ERROR, _unreachable(self.url, exc)) from exc
        return types.ListToolsResult(tools=listed.tools)

    async def call_tool(self, _ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            async with self._session() as client:
                result = await client.call_tool(params.name, params.arguments or {})
        except Exception as exc:
            problem = {"code": "server_unreachable", "detail": _unreachable(self.url, exc)}
            text = msgspec.json.encode(problem).decode()
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=text)], structured_content=problem, is_error=True
            )
        return types.CallToolResult(
            content=result.content, structured_content=result.structured_content, is_error=result.is_error
        )


async def serve(url: str, api_key: str) -> None:
    """Serve the server's tools on stdin/stdout until the client closes them."""
    remote = RemoteTools(url, api_key)
    server: Server[Any] = Server(
        "memanto",
        version=VERSION,
        title="Memanto memory",
        instructions=f"Long-term memory for AI agents, kept by the Memanto server at {url}.",
        on_list_tools=remote.list_tools,
        on_call_tool=remote.call_tool,
    )
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
