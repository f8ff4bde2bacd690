"""The MCP server behind `/mcp`: the official SDK's session manager, Streamable HTTP in stateless JSON mode.

The SDK's low-level server lists the tools of `tools.py` and calls them with the owner that
`endpoint.require_owner` found for the request's API key. `endpoint` imports this module (and
with it the SDK) at the first `/mcp` request.

Stateless: every request stands alone (no `Mcp-Session-Id` to keep), so any instance behind
the load balancer can answer it. DNS-rebinding protection (a check of the Host header) is off:
it guards servers that trust whoever reaches them, while every request here carries the owner's
API key, which a rebound page does not have; and behind a load balancer the Host header is the
public name, not a name the app could know.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
import msgspec
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from memanto_server.auth.cache import Owner
from memanto_server.errors import OUTAGE_ERRORS, DependencyUnavailable, MemantoError, outage_backend
from memanto_server.lib.version import VERSION
from memanto_server.mcp.arguments import input_schema, read_arguments
from memanto_server.mcp.tools import OWNER_STATE, TOOLS, ToolSpec
from memanto_server.ops.metrics import DEPENDENCY_ERRORS
from memanto_server.services import Services
from memanto_server.settings import Settings

logger = logging.getLogger("memanto.mcp")

INSTRUCTIONS = (
    "Long-term memory for AI agents. Each tool names an agent (agent_id); its memories outlive sessions. "
    "Use remember to store what is worth keeping, recall to search it, answer to answer a question from it, "
    "and recall_recent, recall_as_of and recall_changed_since to look at it in time. Memory tools use the "
    "agent's live session, activating one when none is live. Errors carry a stable code and a detail."
)


def _tool(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=input_schema(spec.arguments, spec.fields),
        annotations=types.ToolAnnotations(
            title=spec.title,
            read_only_hint=spec.read_only,
            destructive_hint=spec.destructive,
            idempotent_hint=spec.read_only or spec.idempotent,
            open_world_hint=False,
        ),
    )


def problem_of(exc: MemantoError) -> dict[str, Any]:
    """The problem details a REST route would answer for `exc`."""
    problem: dict[str, Any] = {"code": exc.code, "status": exc.status, "title": exc.title, "detail": exc.detail}
    if exc.errors:
        problem["errors"] = msgspec.to_builtins(exc.errors)
    return problem


def tool_error(problem: dict[str, Any]) -> types.CallToolResult:
    """A tool error: the problem's code and detail, as text for the model and as structured content."""
    text = msgspec.json.encode(problem).decode()
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=problem, is_error=True
    )


def tool_result(result: msgspec.Struct | dict[str, Any]) -> types.CallToolResult:
    data = msgspec.to_builtins(result)
    text = msgspec.json.encode(data).decode()
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structured_content=data)


class ToolServer:
    """The tools, served to the owner of each request's API key."""

    def __init__(self, services: Callable[[], Services], retry_after_seconds: int) -> None:
        self._services = services
        self._retry_after = retry_after_seconds
        self._specs = {spec.name: spec for spec in TOOLS}
        self._tools = [_tool(spec) for spec in TOOLS]
        self._schemas = {tool.name: tool.input_schema for tool in self._tools}
        self.server: Server[Any] = Server(
            "memanto",
            version=VERSION,
            title="Memanto memory",
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    async def list_tools(self, _ctx: Any, _params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self._tools)

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        owner = self._owner_of(ctx)
        spec = self._specs.get(params.name)
        if owner is None or spec is None:
            detail = "no such tool" if owner is not None else "the request carries no owner"
            return tool_error({"code": "unknown_tool" if owner else "missing_credentials", "detail": detail})
        return await self.run(spec, owner, params.arguments)

    async def run(self, spec: ToolSpec, owner: Owner, arguments: dict[str, Any] | None) -> types.CallToolResult:
        started = time.perf_counter()
        outcome = "ok"
        try:
            args = read_arguments(arguments, spec.arguments, self._schemas[spec.name])
            return tool_result(await spec.handler(self._services(), owner, args))
        except MemantoError as exc:
            outcome = exc.code
            return tool_error(problem_of(exc))
        except OUTAGE_ERRORS as exc:
            outcome = "dependency_unavailable"
            DEPENDENCY_ERRORS.labels(outage_backend(exc)).inc()
            logger.warning("dependency unavailable in tool %s (%s)", spec.name, type(exc).__name__)
            unavailable = DependencyUnavailable(f"a backend is unavailable; retry in {self._retry_after} s")
            return tool_error({**problem_of(unavailable), "retry_after": self._retry_after})
        except Exception:
            outcome = "internal_error"
            logger.exception("tool %s failed", spec.name)
            return tool_error({"code": "internal_error", "status": 500, "detail": "an unexpected error occurred"})
        finally:
            logger.debug(
                "tool %s %s",
                spec.name,
                outcome,
                extra={"owner_id": owner.owner_id, "duration_ms": round((time.perf_counter() - started) * 1000, 2)},
            )

    @staticmethod
    def _owner_of(ctx: Any) -> Owner | None:
        request = getattr(ctx, "request", None)
        state = request.scope.get("state", {}) if request is not None else {}
        owner = state.get(OWNER_STATE)
        return owner if isinstance(owner, Owner) else None


@asynccontextmanager
async def running_session_manager(
    services: Callable[[], Services], settings: Settings
) -> AsyncIterator[StreamableHTTPSessionManager]:
    """The SDK's session manager for the tools, running (its task group open) while in the block."""
    tools = ToolServer(services, settings.retry_after_seconds)
    manager = StreamableHTTPSessionManager(
        app=tools.server,
        json_response=True,
        stateless=True,
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_request_body_size=settings.max_body_bytes,
    )
    async with manager.run():
        yield manager
