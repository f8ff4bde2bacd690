"""`memanto mcp`: the server's MCP tools over stdio, for desktop MCP clients."""

from __future__ import annotations

import logging
import sys

import click

from memanto_server.cli.memanto.config_file import ConfigError, effective, load


@click.command("mcp")
def mcp_command() -> None:
    """Serve the Memanto MCP tools over stdio, for desktop MCP clients (Claude Desktop, Cursor).

    Each call goes to the server of the CLI's configuration (`memanto config show`) with its
    API key. Configure a desktop client with the command `memanto` and the argument `mcp`.
    """
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = effective(load())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not config.api_key:
        raise click.UsageError("no API key: set MEMANTO_API_KEY or run `memanto config set api_key mk_…`")
    import anyio  # the MCP SDK is imported only by this command: the rest of the CLI starts without it

    from memanto_server.mcp.stdio import serve

    anyio.run(serve, f"{config.server_url}/mcp", config.api_key)
