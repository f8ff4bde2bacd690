"""Memory lifecycle routes (session token; the path agent must be the token's agent).

`…/memories/{id}/expire` and `/restore`, and the recalls in time: `…/recall/recent`,
`…/recall/as-of`, `…/recall/changed-since` (MEMANTO's routes).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from memanto_server.auth.credentials import provide_claims
from memanto_server.errors import Forbidden
from memanto_server.http import (
    BODY_ROUTE,
    SESSION_EXPIRY_DOC,
    TOKEN_AUTH,
    TOKEN_ROUTE,
    AgentIdPath,
    MemoryIdPath,
    problems,
    with_session_expiry,
)
from memanto_server.memories.schemas import (
    AsOfRequest,
    ChangedSinceRequest,
    ExpireRequest,
    MemoryRecord,
    RecentRequest,
    TimelineResult,
)
from memanto_server.services import services_of
from memanto_server.sessions.tokens import SessionClaims


def _own(claims: SessionClaims, agent_id: str) -> SessionClaims:
    if claims.agent_id != agent_id:
        raise Forbidden("the session token belongs to another agent", code="agent_mismatch")
    return claims


class LifecycleController(Controller):
    path = "/agents/{agent_id:str}"
    tags = ["memories"]
    security = TOKEN_AUTH
    response_headers = SESSION_EXPIRY_DOC
    dependencies = {"claims": Provide(provide_claims)}

    @post(
        "/memories/{memory_id:str}/expire",
        status_code=200,
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE, 404),
        summary="Expire a memory: kept, but left out of recall and answer unless asked for",
    )
    async def expire(
        self,
        agent_id: AgentIdPath,
        memory_id: MemoryIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        data: JSONBody[ExpireRequest | None] = None,
    ) -> Response[MemoryRecord]:
        reason = data.reason if data else None
        record, state = await services_of(request).lifecycle.expire(_own(claims, agent_id), memory_id, reason)
        return with_session_expiry(record, state)

    @post(
        "/memories/{memory_id:str}/restore",
        status_code=200,
        responses=problems(*TOKEN_ROUTE, 404),
        summary="Restore an expired memory: it holds again, with no end",
    )
    async def restore(
        self,
        agent_id: AgentIdPath,
        memory_id: MemoryIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
    ) -> Response[MemoryRecord]:
        record, state = await services_of(request).lifecycle.restore(_own(claims, agent_id), memory_id)
        return with_session_expiry(record, state)

    @post(
        "/recall/recent",
        status_code=200,
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE),
        summary="The memories stored most recently, newest first, paginated",
    )
    async def recent(
        self,
        agent_id: AgentIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        data: JSONBody[RecentRequest | None] = None,
    ) -> Response[TimelineResult]:
        result, state = await services_of(request).lifecycle.recent(_own(claims, agent_id), data or RecentRequest())
        return with_session_expiry(result, state)

    @post(
        "/recall/as-of",
        status_code=200,
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE),
        summary="What the agent knew at a time: memories that had occurred by then and were not yet expired",
    )
    async def as_of(
        self,
        agent_id: AgentIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        data: JSONBody[AsOfRequest],
    ) -> Response[TimelineResult]:
        result, state = await services_of(request).lifecycle.as_of(_own(claims, agent_id), data)
        return with_session_expiry(result, state)

    @post(
        "/recall/changed-since",
        status_code=200,
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE),
        summary="Memories created, changed, expired or restored after a time, latest change first",
    )
    async def changed_since(
        self,
        agent_id: AgentIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        data: JSONBody[ChangedSinceRequest],
    ) -> Response[TimelineResult]:
        result, state = await services_of(request).lifecycle.changed_since(_own(claims, agent_id), data)
        return with_session_expiry(result, state)
