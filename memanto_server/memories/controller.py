"""Memory routes (session token; the path agent must be the token's agent)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from memanto_server.auth.credentials import provide_claims
from memanto_server.errors import Forbidden, InvalidInput
from memanto_server.http import (
    BODY_ROUTE,
    SESSION_EXPIRY_DOC,
    TOKEN_AUTH,
    TOKEN_ROUTE,
    AgentIdPath,
    MemoryIdPath,
    instant,
    problems,
    with_session_expiry,
)
from memanto_server.limits import (
    ANSWER_SOURCES,
    CURSOR_PATTERN,
    MAX_CONTENT_CHARS,
    MAX_CURSOR_CHARS,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_QUERY_CHARS,
    MAX_TAGS,
    MAX_TITLE_CHARS,
    MEMORY_PAGE,
    NO_NUL,
    NO_NUL_NON_EMPTY,
    RECALL_PAGE,
    Tag,
)
from memanto_server.memories.schemas import (
    AnswerRequest,
    AnswerResult,
    BatchRememberRequest,
    BatchStored,
    MemoryFilters,
    MemoryPage,
    MemoryPatch,
    MemoryRecord,
    MemoryType,
    RecallMode,
    RecallRequest,
    RecallResult,
    RememberRequest,
    StoredMemory,
)
from memanto_server.services import services_of
from memanto_server.sessions.tokens import SessionClaims

IDEMPOTENT_REPLAY_HEADER = "Idempotent-Replayed"

TypeFilter = Annotated[
    list[MemoryType] | None,
    QueryParameter(name="type", description="Only memories of this type; repeat the parameter for several."),
]
TagFilter = Annotated[
    list[Tag] | None,
    QueryParameter(
        name="tags",
        max_items=MAX_TAGS,
        description="Only memories that carry every one of these tags; repeat the parameter for several.",
    ),
]
_TIME = "RFC 3339 with a UTC offset, e.g. `2026-03-30T16:30:00Z`"
CreatedAfter = Annotated[
    str | None, QueryParameter(format="date-time", description=f"Only memories created strictly after: {_TIME}.")
]
CreatedBefore = Annotated[
    str | None, QueryParameter(format="date-time", description=f"Only memories created strictly before: {_TIME}.")
]
CursorParam = Annotated[
    str | None,
    QueryParameter(
        max_length=MAX_CURSOR_CHARS,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page, unchanged, with the same query and filters.",
    ),
]
MEMORY_ROUTE = problems(*TOKEN_ROUTE, 404)
_GIVE_IT = "required unless the JSON body gives it"


def _own(claims: SessionClaims, agent_id: str) -> SessionClaims:
    if claims.agent_id != agent_id:
        raise Forbidden("the session token belongs to another agent", code="agent_mismatch")
    return claims


class MemoryController(Controller):
    path = "/agents/{agent_id:str}"
    tags = ["memories"]
    security = TOKEN_AUTH
    response_headers = SESSION_EXPIRY_DOC
    dependencies = {"claims": Provide(provide_claims)}

    @post(
        "/remember",
        status_code=HTTP_201_CREATED,
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE),
        summary="Store a memory (201 once committed; an Idempotency-Key replay returns the first result)",
        description="The fields come as query parameters or as a JSON body (the body wins). The same "
        "`Idempotency-Key` with the same request returns the first result (`Idempotent-Replayed: true`); with a "
        "different request it is a 422 `idempotency_key_reused`.",
    )
    async def remember(
        self,
        agent_id: AgentIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        content: Annotated[
            str | None,
            QueryParameter(
                min_length=1, max_length=MAX_CONTENT_CHARS, pattern=NO_NUL, description=f"The memory; {_GIVE_IT}."
            ),
        ] = None,
        memory_type: Annotated[MemoryType, QueryParameter(name="type", description="The kind of memory.")] = "fact",
        title: Annotated[
            str | None,
            QueryParameter(max_length=MAX_TITLE_CHARS, pattern=NO_NUL, description="A short title (searched too)."),
        ] = None,
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                min_length=1,
                max_length=MAX_IDEMPOTENCY_KEY_CHARS,
                pattern=NO_NUL_NON_EMPTY,
                description="Makes a retry safe: the same key for the same agent stores once and returns the first "
                "result; the key with a different request is refused (422).",
            ),
        ] = None,
        data: JSONBody[RememberRequest | None] = None,
    ) -> Response[StoredMemory]:
        if data is None:
            if content is None:
                raise InvalidInput.field("content", "required (query parameter or JSON body)")
            data = RememberRequest(content=content, type=memory_type, title=title)
        stored, state, replayed = await services_of(request).memories.remember(
            _own(claims, agent_id), data, idempotency_key
        )
        response = with_session_expiry(stored, state, HTTP_201_CREATED)
        if replayed:
            response.headers[IDEMPOTENT_REPLAY_HEADER] = "true"
        return response

    @post(
        "/batch-remember",
        status_code=HTTP_201_CREATED,
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE),
        summary="Store 1-100 memories in one statement: all or nothing",
    )
    async def batch_remember(
        self,
        agent_id: AgentIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        data: JSONBody[BatchRememberRequest],
    ) -> Response[BatchStored]:
        stored, state = await services_of(request).memories.remember_batch(_own(claims, agent_id), data.memories)
        return with_session_expiry(stored, state, HTTP_201_CREATED)

    @post(
        "/recall",
        status_code=200,
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE),
        summary="Search the agent's memories from every session, best first, paginated",
        description="The fields come as query parameters or as a JSON body (the body wins).",
    )
    async def recall(
        self,
        agent_id: AgentIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        search: Annotated[
            str | None,
            QueryParameter(
                name="query",
                min_length=1,
                max_length=MAX_QUERY_CHARS,
                pattern=NO_NUL_NON_EMPTY,
                description=f'What to look for (words, `"a phrase"`, `or`, `-word`); {_GIVE_IT}.',
            ),
        ] = None,
        limit: Annotated[
            int,
            QueryParameter(ge=RECALL_PAGE.least, le=RECALL_PAGE.most, description="Memories per page."),
        ] = RECALL_PAGE.default,
        memory_type: TypeFilter = None,
        tags: TagFilter = None,
        created_after: CreatedAfter = None,
        created_before: CreatedBefore = None,
        min_score: Annotated[
            float | None, QueryParameter(ge=0, le=1, description="Only memories that score at least this (0 to 1).")
        ] = None,
        cursor: CursorParam = None,
        min_similarity: Annotated[
            float | None, QueryParameter(ge=0, le=1, description="MEMANTO's name for `min_score`.")
        ] = None,
        include_expired: Annotated[bool, QueryParameter(description="Expired memories too.")] = False,
        mode: Annotated[
            RecallMode,
            QueryParameter(description="hybrid (every signal), text (words only) or semantic (meaning only)."),
        ] = "hybrid",
        data: JSONBody[RecallRequest | None] = None,
    ) -> Response[RecallResult]:
        after, before = instant(created_after, "created_after"), instant(created_before, "created_before")
        if data is None:
            if search is None:
                raise InvalidInput.field("query", "required (query parameter or JSON body)")
            data = RecallRequest(
                query=search,
                limit=limit,
                type=memory_type,
                tags=tags,
                created_after=after,
                created_before=before,
                min_score=min_score,
                cursor=cursor,
                min_similarity=min_similarity,
                include_expired=include_expired,
                mode=mode,
            )
        result, state = await services_of(request).memories.recall(_own(claims, agent_id), data)
        return with_session_expiry(result, state)

    @post(
        "/answer",
        status_code=200,
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE),
        summary="An extractive answer from the agent's own memories, with its sources",
        description="The fields come as query parameters or as a JSON body (the body wins).",
    )
    async def answer(
        self,
        agent_id: AgentIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        question: Annotated[
            str | None,
            QueryParameter(
                min_length=1,
                max_length=MAX_QUERY_CHARS,
                pattern=NO_NUL_NON_EMPTY,
                description=f"The question; {_GIVE_IT}.",
            ),
        ] = None,
        limit: Annotated[
            int,
            QueryParameter(
                ge=ANSWER_SOURCES.least, le=ANSWER_SOURCES.most, description="How many memories the answer may draw on."
            ),
        ] = ANSWER_SOURCES.default,
        include_expired: Annotated[bool, QueryParameter(description="Expired memories too.")] = False,
        data: JSONBody[AnswerRequest | None] = None,
    ) -> Response[AnswerResult]:
        if data is None:
            if question is None:
                raise InvalidInput.field("question", "required (query parameter or JSON body)")
            data = AnswerRequest(question=question, limit=limit, include_expired=include_expired)
        result, state = await services_of(request).memories.answer(_own(claims, agent_id), data)
        return with_session_expiry(result, state)

    @get("/memories", responses=problems(*TOKEN_ROUTE), summary="The agent's memories, newest first, paginated")
    async def list_memories(
        self,
        agent_id: AgentIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        memory_type: TypeFilter = None,
        tags: TagFilter = None,
        created_after: CreatedAfter = None,
        created_before: CreatedBefore = None,
        limit: Annotated[
            int, QueryParameter(ge=MEMORY_PAGE.least, le=MEMORY_PAGE.most, description="Memories per page.")
        ] = MEMORY_PAGE.default,
        cursor: CursorParam = None,
    ) -> Response[MemoryPage]:
        filters = MemoryFilters(
            types=tuple(memory_type) if memory_type else None,
            tags=tuple(tags) if tags else None,
            created_after=instant(created_after, "created_after"),
            created_before=instant(created_before, "created_before"),
        )
        page, state = await services_of(request).memories.list(_own(claims, agent_id), filters, limit, cursor)
        return with_session_expiry(page, state)

    @get("/memories/{memory_id:str}", responses=MEMORY_ROUTE, summary="One memory")
    async def show_memory(
        self,
        agent_id: AgentIdPath,
        memory_id: MemoryIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
    ) -> Response[MemoryRecord]:
        record, state = await services_of(request).memories.get(_own(claims, agent_id), memory_id)
        return with_session_expiry(record, state)

    @patch(
        "/memories/{memory_id:str}",
        responses=problems(*TOKEN_ROUTE, *BODY_ROUTE, 404),
        summary="Change any editable field (the search text is re-indexed)",
    )
    async def patch_memory(
        self,
        agent_id: AgentIdPath,
        memory_id: MemoryIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
        data: JSONBody[MemoryPatch],
    ) -> Response[MemoryRecord]:
        record, state = await services_of(request).memories.patch(_own(claims, agent_id), memory_id, data)
        return with_session_expiry(record, state)

    @delete("/memories/{memory_id:str}", status_code=HTTP_204_NO_CONTENT, responses=MEMORY_ROUTE, summary="Delete")
    async def delete_memory(
        self,
        agent_id: AgentIdPath,
        memory_id: MemoryIdPath,
        claims: NamedDependency[SessionClaims],
        request: Request[Any, Any, Any],
    ) -> Response[None]:
        state = await services_of(request).memories.delete(_own(claims, agent_id), memory_id)
        return with_session_expiry(None, state, HTTP_204_NO_CONTENT)
