"""Session routes: activate, current/status, extend, deactivate."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from memanto_server.auth.cache import Owner
from memanto_server.auth.credentials import Credentials, provide_claims, provide_credentials, provide_owner
from memanto_server.errors import InvalidInput
from memanto_server.http import (
    BODY_ROUTE,
    KEY_ROUTE,
    SESSION_EXPIRES_HEADER,
    TOKEN_ROUTE,
    AgentIdPath,
    problems,
    with_session_expiry,
)
from memanto_server.services import services_of
from memanto_server.sessions.schemas import (
    ActivatedSession,
    ActivateRequest,
    CurrentSession,
    EndedSession,
    ExtendedSession,
    ExtendRequest,
    SessionHistory,
)
from memanto_server.sessions.tokens import SessionClaims

QueryHours = Annotated[float | None, QueryParameter(gt=0, description="Hours (fractions allowed), at most 24.")]


class SessionController(Controller):
    tags = ["sessions"]

    @post(
        "/agents/{agent_id:str}/activate",
        status_code=HTTP_201_CREATED,
        dependencies={"owner": Provide(provide_owner)},
        responses=problems(*KEY_ROUTE, *BODY_ROUTE),
        summary="Start a session (creates the agent if needed, supersedes its live session)",
    )
    async def activate(
        self,
        agent_id: AgentIdPath,
        owner: NamedDependency[Owner],
        request: Request[Any, Any, Any],
        duration_hours: QueryHours = None,
        data: JSONBody[ActivateRequest | None] = None,
    ) -> ActivatedSession:
        body = data or ActivateRequest()
        hours = body.duration_hours if body.duration_hours is not None else duration_hours
        return await services_of(request).sessions.activate(owner, agent_id, hours, body.metadata)

    @get(
        ["/session/current", "/status"],
        responses=problems(*TOKEN_ROUTE),
        summary="The token's live session",
    )
    async def current(self, request: Request[Any, Any, Any]) -> Response[CurrentSession]:
        # The hottest route takes no parameters, so it asks for its credentials itself: a
        # dependency would cost a resolution per request for nothing (bench/profile.py).
        claims = await provide_claims(request)
        current = await services_of(request).sessions.current(claims)
        return Response(current, headers={SESSION_EXPIRES_HEADER: current.expires_at})

    @post(
        "/session/extend",
        dependencies={"claims": Provide(provide_claims)},
        status_code=200,
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE),
        summary="Push the session's expiry back; the token stays the same",
    )
    async def extend(
        self,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        extend_hours: QueryHours = None,
        additional_hours: QueryHours = None,
        data: JSONBody[ExtendRequest | None] = None,
    ) -> Response[ExtendedSession]:
        body = data or ExtendRequest()
        for field, value in (
            ("extend_hours", body.extend_hours),
            ("additional_hours", body.additional_hours),
            ("extend_hours", extend_hours),
            ("additional_hours", additional_hours),
        ):
            if value is not None:
                extended, state = await services_of(request).sessions.extend(claims, value, field)
                return with_session_expiry(extended, state)
        raise InvalidInput.field("extend_hours", "required (or additional_hours)")

    @post(
        "/agents/{agent_id:str}/deactivate",
        dependencies={"credentials": Provide(provide_credentials)},
        status_code=200,
        responses=problems(*TOKEN_ROUTE, 404),
        summary="End the agent's live session (token, or the owner's API key alone)",
    )
    async def deactivate(
        self, agent_id: AgentIdPath, credentials: NamedDependency[Credentials], request: Request[Any, Any, Any]
    ) -> EndedSession:
        return await services_of(request).sessions.deactivate(credentials.owner, agent_id, credentials.claims)

    @get(
        "/agents/{agent_id:str}/sessions",
        dependencies={"owner": Provide(provide_owner)},
        responses=problems(*KEY_ROUTE, 404),
        summary="Every session the agent had, newest first, with how it ended and its final counters",
    )
    async def history(
        self,
        agent_id: AgentIdPath,
        owner: NamedDependency[Owner],
        request: Request[Any, Any, Any],
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, QueryParameter(max_length=512)] = None,
    ) -> SessionHistory:
        return await services_of(request).sessions.history(owner, agent_id, limit, cursor)
