"""Memory routes (session token; the path agent must be the token's agent)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from app.auth.guards import provide_claims
from app.errors import Forbidden, InvalidInput
from app.http import AgentIdPath, with_session_expiry
from app.memories.schemas import MemoryType, RecallRequest, RecallResult, RememberRequest, StoredMemory
from app.services import Services
from app.sessions.tokens import SessionClaims


def _own_agent(claims: SessionClaims, agent_id: str) -> SessionClaims:
    if claims.agent_id != agent_id:
        raise Forbidden("the session token belongs to another agent", code="agent_mismatch")
    return claims


class MemoryController(Controller):
    path = "/agents/{agent_id:str}"
    tags = ["memories"]
    dependencies = {"claims": Provide(provide_claims)}

    @post("/remember", status_code=HTTP_201_CREATED, summary="Store a memory (201 once committed)")
    async def remember(
        self,
        agent_id: AgentIdPath,
        claims: NamedDependency[SessionClaims],
        services: NamedDependency[Services],
        content: Annotated[str | None, QueryParameter(min_length=1, max_length=10_000)] = None,
        memory_type: Annotated[MemoryType, QueryParameter(name="type")] = "fact",
        title: Annotated[str | None, QueryParameter(max_length=100)] = None,
        data: JSONBody[RememberRequest | None] = None,
    ) -> Response[StoredMemory]:
        if data is None:
            if content is None:
                raise InvalidInput.field("content", "required (query parameter or JSON body)")
            data = RememberRequest(content=content, type=memory_type, title=title)
        stored, state = await services.memories.remember(_own_agent(claims, agent_id), data)
        return with_session_expiry(stored, state, HTTP_201_CREATED)

    @post("/recall", status_code=200, summary="Search the agent's memories from every session, best first")
    async def recall(
        self,
        agent_id: AgentIdPath,
        claims: NamedDependency[SessionClaims],
        services: NamedDependency[Services],
        search: Annotated[str | None, QueryParameter(name="query", min_length=1, max_length=1000)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
        memory_type: Annotated[list[MemoryType] | None, QueryParameter(name="type")] = None,
        data: JSONBody[RecallRequest | None] = None,
    ) -> Response[RecallResult]:
        if data is None:
            if search is None:
                raise InvalidInput.field("query", "required (query parameter or JSON body)")
            data = RecallRequest(query=search, limit=limit, type=memory_type)
        result, state = await services.memories.recall(_own_agent(claims, agent_id), data)
        return with_session_expiry(result, state)
