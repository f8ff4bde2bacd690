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
    KEY_AUTH,
    KEY_ROUTE,
    SESSION_EXPIRY_DOC,
    TOKEN_AUTH,
    TOKEN_OR_KEY_AUTH,
    TOKEN_ROUTE,
    AgentIdPath,
    problems,
    with_session_expiry,
)
from memanto_server.limits import CURSOR_PATTERN, HISTORY_PAGE, MAX_CURSOR_CHARS, MAX_HOURS, MIN_HOURS
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


def _hours(description: str) -> QueryParameter:
    return QueryParameter(
        ge=MIN_HOURS,
        le=MAX_HOURS,
        description=f"{description}: hours, fractions allowed, at least one second; at most what the server "
        "allows (24 by default). Also accepted in the JSON body.",
    )


DurationHours = Annotated[float | None, _hours("How long the session lasts (6 by default)")]
ExtendHours = Annotated[float | None, _hours("How much longer the session lasts")]
AdditionalHours = Annotated[float | None, _hours("Another name of `extend_hours`")]


class SessionController(Controller):
    tags = ["sessions"]

    @post(
        "/agents/{agent_id:str}/activate",
        status_code=HTTP_201_CREATED,
        dependencies={"owner": Provide(provide_owner)},
        security=KEY_AUTH,
        responses=problems(*KEY_ROUTE, *BODY_ROUTE),
        summary="Start a session (creates the agent if needed, supersedes its live session)",
    )
    async def activate(
        self,
        agent_id: AgentIdPath,
        owner: NamedDependency[Owner],
        request: Request[Any, Any, Any],
        duration_hours: DurationHours = None,
        data: JSONBody[ActivateRequest | None] = None,
    ) -> ActivatedSession:
        body = data or ActivateRequest()
        hours = body.duration_hours if body.duration_hours is not None else duration_hours
        return await services_of(request).sessions.activate(owner, agent_id, hours, body.metadata)

    @get(
        ["/session/current", "/status"],
        security=TOKEN_AUTH,
        response_headers=SESSION_EXPIRY_DOC,
        responses=problems(*TOKEN_ROUTE),
        summary="The token's live session",
    )
    async def current(self, request: Request[Any, Any, Any]) -> Response[CurrentSession]:
        # The hottest route takes no parameters, so it asks for its credentials itself: a
        # dependency would cost a resolution per request for nothing (bench/profile.py).
        claims = await provide_claims(request)
        current = await services_of(request).sessions.current(claims)
        return with_session_expiry(current, current.expires_at)

    @post(
        "/session/extend",
        dependencies={"claims": Provide(provide_claims)},
        security=TOKEN_AUTH,
        response_headers=SESSION_EXPIRY_DOC,
        status_code=200,
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE),
        summary="Push the session's expiry back; the token stays the same",
    )
    async def extend(
        self,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        extend_hours: ExtendHours = None,
        additional_hours: AdditionalHours = None,
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
        security=TOKEN_OR_KEY_AUTH,
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
        security=KEY_AUTH,
        responses=problems(*KEY_ROUTE, 404),
        summary="Every session the agent had, newest first, with how it ended and its final counters",
    )
    async def history(
        self,
        agent_id: AgentIdPath,
        owner: NamedDependency[Owner],
        request: Request[Any, Any, Any],
        limit: Annotated[
            int, QueryParameter(ge=HISTORY_PAGE.least, le=HISTORY_PAGE.most, description="Sessions per page.")
        ] = HISTORY_PAGE.default,
        cursor: Annotated[
            str | None,
            QueryParameter(
                max_length=MAX_CURSOR_CHARS,
                pattern=CURSOR_PATTERN,
                description="`next_cursor` of the previous page, unchanged.",
            ),
        ] = None,
    ) -> SessionHistory:
        return await services_of(request).sessions.history(owner, agent_id, limit, cursor)
