"""Agent routes (API key)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from memanto_server.agents.schemas import AgentDetail, AgentList, AgentSummary, CreateAgentRequest
from memanto_server.auth.cache import Owner
from memanto_server.auth.credentials import provide_owner
from memanto_server.http import BODY_ROUTE, KEY_AUTH, KEY_ROUTE, AgentIdPath, problems
from memanto_server.limits import AGENT_PAGE, CURSOR_PATTERN, MAX_CURSOR_CHARS
from memanto_server.services import services_of


class AgentController(Controller):
    path = "/agents"
    tags = ["agents"]
    security = KEY_AUTH
    dependencies = {"owner": Provide(provide_owner)}

    @post(
        status_code=HTTP_201_CREATED,
        responses=problems(*KEY_ROUTE, *BODY_ROUTE, 409),
        summary="Create an agent (409 if the owner has one of that name)",
    )
    async def create(
        self, data: JSONBody[CreateAgentRequest], owner: NamedDependency[Owner], request: Request[Any, Any, Any]
    ) -> AgentSummary:
        return await services_of(request).agents.create(owner, data.agent_id, data.description)

    @get(responses=problems(*KEY_ROUTE), summary="The owner's agents, by agent_id, keyset-paginated")
    async def list_agents(
        self,
        owner: NamedDependency[Owner],
        request: Request[Any, Any, Any],
        limit: Annotated[
            int, QueryParameter(ge=AGENT_PAGE.least, le=AGENT_PAGE.most, description="Agents per page.")
        ] = AGENT_PAGE.default,
        cursor: Annotated[
            str | None,
            QueryParameter(
                max_length=MAX_CURSOR_CHARS,
                pattern=CURSOR_PATTERN,
                description="`next_cursor` of the previous page, unchanged.",
            ),
        ] = None,
    ) -> AgentList:
        return await services_of(request).agents.list(owner, limit, cursor)

    @get("/{agent_id:str}", responses=problems(*KEY_ROUTE, 404), summary="One agent with its counts and live session")
    async def show(
        self, agent_id: AgentIdPath, owner: NamedDependency[Owner], request: Request[Any, Any, Any]
    ) -> AgentDetail:
        return await services_of(request).agents.get(owner, agent_id)

    @delete(
        "/{agent_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*KEY_ROUTE, 404),
        summary="Delete an agent: ends its session, deletes its memories and history for good",
    )
    async def remove(
        self, agent_id: AgentIdPath, owner: NamedDependency[Owner], request: Request[Any, Any, Any]
    ) -> None:
        await services_of(request).agents.delete(owner, agent_id)
