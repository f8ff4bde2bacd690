"""The Moorcheh v1 API as the published `memanto` package (0.2.30, `moorcheh-sdk` 1.3.7) calls it.

With `MOORCHEH_BASE_URL` at `<server>/moorcheh/v1` and `MOORCHEH_API_KEY` an API key of this
server, memanto's CLI and SDK keep their memories here, under the key's owner: the namespace
`memanto_agent_{id}` is agent `{id}`. Only the calls that package makes are served. Memory
calls run in the agent's live session, activating one only when none is live (`KeyedSessions`),
and are counted in it like REST calls.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_202_ACCEPTED

from memanto_server.auth.cache import Owner
from memanto_server.auth.credentials import provide_owner
from memanto_server.compat.documents import (
    agent_of,
    document_id,
    memory_of,
    metadata_of,
    namespace_agent,
    text_of,
)
from memanto_server.compat.schemas import (
    AnswerGenerated,
    CreateNamespaceRequest,
    GenerateAnswerRequest,
    Hit,
    NamespaceCreated,
    NamespaceDeleted,
    Pagination,
    SearchAnswer,
    SearchRequest,
    Statistics,
    TextData,
    TextItem,
    UploadAccepted,
    UploadRequest,
)
from memanto_server.errors import InvalidInput
from memanto_server.http import BODY_ROUTE, KEY_AUTH, KEY_ROUTE, OwnRouter, problems
from memanto_server.memories.lifecycle_repository import LifecycleRow
from memanto_server.memories.schemas import AnswerRequest, RecallRequest, RecentRequest
from memanto_server.ops.ratelimit import enforce_rate_limit
from memanto_server.services import Services, services_of
from memanto_server.sessions.tokens import SessionClaims
from memanto_server.settings import Settings

BASE_PATH = "/moorcheh/v1"
CLIENT = "memanto"  # how a session these routes activate is marked in the session history
ANSWER_MODEL = "memanto-server/extractive"
NamespacePath = Annotated[
    str, PathParameter(max_length=200, description="`memanto_agent_<agent_id>`: the agent of the key's owner.")
]


def parse_query(query: str) -> tuple[str, list[str], list[str]]:
    """(search text, types, tags) of a query with Moorcheh's filter tokens (`#memory_type:x`, `#tag`).

    Other `#key:value` filters are metadata filters that memanto does not send for these calls;
    they are dropped rather than searched for as words.
    """
    words, types, tags = [], [], []
    for token in query.split():
        if not token.startswith("#") or len(token) == 1:
            words.append(token)
            continue
        key, separator, value = token[1:].partition(":")
        if not separator:
            tags.append(key)
        elif key == "memory_type":
            types.append(value)
    return " ".join(words), types, tags


def _hit(row: LifecycleRow, score: float) -> Hit:
    memory = row.memory
    return Hit(
        id=document_id(memory.memory_id, row.idempotency_key),
        score=round(score, 6),
        text=text_of(memory),
        metadata=metadata_of(memory),
    )


async def _hits(services: Services, claims: SessionClaims, scored: list[tuple[str, float]]) -> list[Hit]:
    """The documents of the memories `scored` names, in its order."""
    rows = {r.memory.memory_id: r for r in await services.lifecycle.rows(claims, [i for i, _ in scored])}
    return [_hit(rows[memory_id], score) for memory_id, score in scored if memory_id in rows]


def _search_of(data: SearchRequest) -> RecallRequest | RecentRequest:
    """A recall of the query's words, or the newest memories when it holds filters alone.

    Expired memories are included: Moorcheh stores documents and knows no expiry, and memanto
    labels (or leaves out) expired ones itself from their `status`.
    """
    text, types, tags = parse_query(data.query)
    fields: dict[str, Any] = {"limit": data.top_k, "type": types or None, "tags": tags or None, "include_expired": True}
    try:
        if not text:
            return msgspec.convert(fields, RecentRequest)
        min_score = data.threshold if data.kiosk_mode else None
        return msgspec.convert({**fields, "query": text, "min_score": min_score}, RecallRequest)
    except msgspec.ValidationError as exc:
        raise InvalidInput.field("query", str(exc), "body") from None


async def _search_one(
    services: Services, owner: Owner, agent_id: str, search: RecallRequest | RecentRequest
) -> list[Hit]:
    async def run(claims: SessionClaims) -> list[Hit]:
        if isinstance(search, RecentRequest):
            rows, _, _ = await services.lifecycle.recent_rows(claims, search)
            return [_hit(row, 0.0) for row in rows]
        found, _ = await services.memories.recall(claims, search)
        return await _hits(services, claims, [(m.memory_id, m.score) for m in found.memories])

    return await services.keyed.run(owner, agent_id, CLIENT, run)


class MoorchehController(Controller):
    tags = ["compat: Moorcheh v1 (memanto 0.2.30)"]
    dependencies = {"owner": Provide(provide_owner)}

    @post(
        "/namespaces",
        status_code=HTTP_201_CREATED,
        responses=problems(*KEY_ROUTE, *BODY_ROUTE, 409),
        summary="Create the agent a `memanto_agent_{id}` namespace names (409 if it exists)",
    )
    async def create_namespace(
        self, data: JSONBody[CreateNamespaceRequest], owner: NamedDependency[Owner], request: Request[Any, Any, Any]
    ) -> NamespaceCreated:
        agent_id = agent_of(data.namespace_name)
        if agent_id is None:
            raise InvalidInput.field("namespace_name", "must be memanto_agent_<agent_id>", "body")
        if data.type != "text":
            raise InvalidInput.field("type", "only text namespaces are served here", "body")
        await services_of(request).agents.create(owner, agent_id, None)
        return NamespaceCreated(
            message="Namespace created successfully", namespace_name=data.namespace_name, type="text"
        )

    @delete(
        "/namespaces/{namespace_name:str}",
        status_code=200,
        responses=problems(*KEY_ROUTE, 404),
        summary="Delete the agent, its memories and history for good",
    )
    async def delete_namespace(
        self, namespace_name: NamespacePath, owner: NamedDependency[Owner], request: Request[Any, Any, Any]
    ) -> NamespaceDeleted:
        await services_of(request).agents.delete(owner, namespace_agent(namespace_name))
        return NamespaceDeleted(message="Namespace deleted successfully", namespace_name=namespace_name)

    @post(
        "/namespaces/{namespace_name:str}/documents",
        status_code=HTTP_202_ACCEPTED,
        responses=problems(*KEY_ROUTE, *BODY_ROUTE, 404),
        summary="Store 1-100 documents as the agent's memories (all or nothing; an id sent again is stored once)",
    )
    async def upload(
        self,
        namespace_name: NamespacePath,
        data: JSONBody[UploadRequest],
        owner: NamedDependency[Owner],
        request: Request[Any, Any, Any],
    ) -> UploadAccepted:
        agent_id = namespace_agent(namespace_name)
        memories = [memory_of(document, index) for index, document in enumerate(data.documents)]
        services = services_of(request)

        async def store(claims: SessionClaims) -> Any:
            return await services.memories.remember_batch(claims, memories)

        await services.keyed.run(owner, agent_id, CLIENT, store)
        return UploadAccepted(status="queued", submitted_ids=[document["id"] for document in data.documents])

    @get(
        "/namespaces/{namespace_name:str}/documents/fetch-text-data",
        responses=problems(*KEY_ROUTE, 404),
        summary="The agent's memories as text documents, newest stored first, a page at a time",
    )
    async def fetch_text_data(
        self,
        namespace_name: NamespacePath,
        owner: NamedDependency[Owner],
        request: Request[Any, Any, Any],
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="How many documents, newest first.")] = 100,
        next_token: Annotated[
            str | None, QueryParameter(max_length=1024, description="`next_token` of the previous page, unchanged.")
        ] = None,
    ) -> TextData:
        started = time.perf_counter()
        agent_id = namespace_agent(namespace_name)
        services = services_of(request)
        page = RecentRequest(limit=limit, cursor=next_token, include_expired=True)

        async def fetch(claims: SessionClaims) -> tuple[list[LifecycleRow], str | None, int]:
            return await services.lifecycle.recent_rows(claims, page)

        rows, next_cursor, _ = await services.keyed.run(owner, agent_id, CLIENT, fetch)
        items = [
            TextItem(
                id=document_id(r.memory.memory_id, r.idempotency_key),
                text=text_of(r.memory),
                metadata=metadata_of(r.memory),
                created_at=(r.memory.occurred_at or r.memory.created_at).isoformat(),
            )
            for r in rows
        ]
        return TextData(
            status="success",
            message=f"Fetched {len(items)} text item(s)",
            namespace=namespace_name,
            statistics=Statistics(total_items=len(items), total_text_chunks=len(items)),
            items=items,
            pagination=Pagination(limit=limit, has_more=next_cursor is not None, next_token=next_cursor),
            execution_time=round(time.perf_counter() - started, 6),
        )

    @post(
        "/search",
        status_code=200,
        responses=problems(*KEY_ROUTE, *BODY_ROUTE, 404),
        summary="Search the agents' memories (recall), best first; `#memory_type:x` and `#tag` filter",
    )
    async def search(
        self, data: JSONBody[SearchRequest], owner: NamedDependency[Owner], request: Request[Any, Any, Any]
    ) -> SearchAnswer:
        started = time.perf_counter()
        services = services_of(request)
        search = _search_of(data)
        results: list[Hit] = []
        for namespace in data.namespaces:
            results += await _search_one(services, owner, namespace_agent(namespace), search)
        results.sort(key=lambda hit: hit.score, reverse=True)
        return SearchAnswer(results=results[: data.top_k], execution_time=round(time.perf_counter() - started, 6))

    @post(
        "/answer",
        status_code=200,
        responses=problems(*KEY_ROUTE, *BODY_ROUTE, 404),
        summary="An extractive answer from the agent's own memories (no language model is called)",
    )
    async def answer(
        self, data: JSONBody[GenerateAnswerRequest], owner: NamedDependency[Owner], request: Request[Any, Any, Any]
    ) -> AnswerGenerated:
        agent_id = agent_of(data.namespace)
        if agent_id is None:
            raise InvalidInput.field("namespace", "must be memanto_agent_<agent_id>", "body")
        services = services_of(request)
        question = AnswerRequest(question=data.query, limit=min(data.top_k or 5, 20))

        async def answer(claims: SessionClaims) -> AnswerGenerated:
            result, _ = await services.memories.answer(claims, question)
            sources = await _hits(services, claims, [(s.memory_id, s.score) for s in result.sources])
            return AnswerGenerated(
                answer=result.answer,
                model=ANSWER_MODEL,
                context_count=len(sources),
                query=data.query,
                used_context=bool(sources),
                sources=sources,
            )

        return await services.keyed.run(owner, agent_id, CLIENT, answer)


def moorcheh_router(settings: Settings) -> OwnRouter:
    """`/moorcheh/v1`, on the owner's API key (`x-api-key`, as the SDK sends it, or a bearer)."""
    return OwnRouter(
        path=BASE_PATH,
        route_handlers=[MoorchehController],
        security=KEY_AUTH,
        guards=[enforce_rate_limit] if settings.rate_limit else [],
    )
