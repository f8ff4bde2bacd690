"""This server's version, as installed (health answers and MCP server info name it)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _installed() -> str:
    try:
        return version("memanto-server")
    except PackageNotFoundError:  # pragma: no cover - a source tree that was not installed
        return "0.0.0"


VERSION = _installed()
