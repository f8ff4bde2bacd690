"""The routes of an agent handle: its memories and its own session, on the session the upkeep keeps."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from memanto_server.client._routes import Routes
from memanto_server.client._sessions import SESSION_GONE_CODES, SessionState, SessionUpkeep
from memanto_server.client._steps import Notify, Op
from memanto_server.client._transport import Retry
from memanto_server.client._wire import drop_none, optional_time, parse_time, segment, with_wire_times
from memanto_server.client.errors import AuthenticationError
from memanto_server.memories.schemas import (
    AnswerResult,
    BatchStored,
    MemoryPage,
    MemoryRecord,
    RecallResult,
    RememberRequest,
    StoredMemory,
    TimelineResult,
)
from memanto_server.sessions.schemas import CurrentSession, EndedSession, ExtendedSession

IDEMPOTENCY_HEADER = "Idempotency-Key"


def _agent_path(st: SessionState, suffix: str = "") -> str:
    return f"/agents/{segment(st.agent_id)}{suffix}"


def _memory_path(st: SessionState, memory_id: str, suffix: str = "") -> str:
    return _agent_path(st, f"/memories/{segment(memory_id)}{suffix}")


def _types(type: str | Sequence[str] | None) -> str | list[str] | None:
    return type if type is None or isinstance(type, str) else list(type)


def _filters(
    type: str | Sequence[str] | None,
    tags: Sequence[str] | None,
    created_after: datetime | str | None,
    created_before: datetime | str | None,
) -> dict[str, Any]:
    """The recall filters of a request body (those left out are not sent)."""
    return drop_none(
        {
            "type": _types(type),
            "tags": list(tags) if tags is not None else None,
            "created_after": optional_time(created_after),
            "created_before": optional_time(created_before),
        }
    )


class AgentRoutes:
    """Every operation of a handle, given the handle's `SessionState`."""

    def __init__(self, routes: Routes, upkeep: SessionUpkeep) -> None:
        self.routes = routes
        self.upkeep = upkeep

    # -- the handle's session

    def current(self, st: SessionState) -> Op[CurrentSession]:
        result = yield from self.upkeep.managed(st, CurrentSession, "GET", "/session/current")
        st.session_id = result.session_id
        return result

    def extend(self, st: SessionState, hours: float) -> Op[ExtendedSession]:
        extended = yield from self.upkeep.managed(
            st,
            ExtendedSession,
            "POST",
            "/session/extend",
            renew=False,
            body={"extend_hours": hours},
            retry=Retry.UNSAFE,
        )
        st.expires_at = parse_time(extended.expires_at)
        if st.on_session is not None:
            yield Notify(st.on_session, st.agent_id, extended)
        return extended

    def deactivate(self, st: SessionState) -> Op[EndedSession]:
        token = st.token
        try:
            ended = yield from self.routes.deactivate(st.agent_id, token)
        except AuthenticationError as exc:
            if token is not None and exc.code in SESSION_GONE_CODES and st.token == token:
                st.clear()  # the token is dead either way
            raise
        if st.token == token:
            st.clear()
        return ended

    # -- memories

    def remember(
        self,
        st: SessionState,
        content: str,
        *,
        type: str = "fact",
        title: str | None = None,
        tags: Sequence[str] | None = None,
        confidence: float | None = None,
        source: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        occurred_at: datetime | str | None = None,
        valid_until: datetime | str | None = None,
    ) -> Op[StoredMemory]:
        body = drop_none(
            {
                "content": content,
                "type": type,
                "title": title,
                "tags": list(tags) if tags is not None else None,
                "confidence": confidence,
                "source": source,
                "metadata": dict(metadata) if metadata is not None else None,
                "occurred_at": optional_time(occurred_at),
                "valid_until": optional_time(valid_until),
            }
        )
        # One key for every attempt of this call, re-activations included: stored once.
        key = idempotency_key or str(uuid.uuid4())
        return self.upkeep.managed(
            st,
            StoredMemory,
            "POST",
            _agent_path(st, "/remember"),
            body=body,
            headers={IDEMPOTENCY_HEADER: key},
            retry=Retry.SAFE,
        )

    def batch_remember(
        self, st: SessionState, memories: Sequence[Mapping[str, Any] | RememberRequest]
    ) -> Op[BatchStored]:
        # Every item's datetimes as `remember` sends them (a naive one is UTC), typed or not.
        items = [with_wire_times(msgspec.structs.asdict(m) if isinstance(m, RememberRequest) else m) for m in memories]
        # Items that all carry their own idempotency_key make the whole batch safe to repeat.
        keyed = bool(items) and all(m.get("idempotency_key") for m in items)
        return self.upkeep.managed(
            st,
            BatchStored,
            "POST",
            _agent_path(st, "/batch-remember"),
            body={"memories": items},
            retry=Retry.SAFE if keyed else Retry.UNSAFE,
        )

    def recall(
        self,
        st: SessionState,
        query: str,
        *,
        limit: int = 10,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        min_score: float | None = None,
        cursor: str | None = None,
        include_expired: bool = False,
    ) -> Op[RecallResult]:
        body = {
            "query": query,
            "limit": limit,
            **_filters(type, tags, created_after, created_before),
            **drop_none({"min_score": min_score, "cursor": cursor, "include_expired": include_expired or None}),
        }
        return self.upkeep.managed(st, RecallResult, "POST", _agent_path(st, "/recall"), body=body, retry=Retry.UNSAFE)

    def answer(
        self, st: SessionState, question: str, limit: int = 5, *, include_expired: bool = False
    ) -> Op[AnswerResult]:
        body = drop_none({"question": question, "limit": limit, "include_expired": include_expired or None})
        return self.upkeep.managed(st, AnswerResult, "POST", _agent_path(st, "/answer"), body=body, retry=Retry.UNSAFE)

    # -- the memory lifecycle: recalls in time

    def timeline(
        self,
        st: SessionState,
        kind: str,
        *,
        limit: int = 10,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        cursor: str | None = None,
        include_expired: bool = False,
        as_of: datetime | str | None = None,
        since: datetime | str | None = None,
    ) -> Op[TimelineResult]:
        """`recall/<kind>`: `recent`, `as-of` (with `as_of`) or `changed-since` (with `since`).
        Not retried once sent: like recall, what it returns counts as retrieved."""
        body = {
            "limit": limit,
            **_filters(type, tags, created_after, created_before),
            **drop_none(
                {
                    "as_of": optional_time(as_of),
                    "since": optional_time(since),
                    "cursor": cursor,
                    "include_expired": include_expired or None,
                }
            ),
        }
        return self.upkeep.managed(
            st, TimelineResult, "POST", _agent_path(st, f"/recall/{kind}"), body=body, retry=Retry.UNSAFE
        )

    # -- the memory lifecycle: expire and restore (each safe to repeat: a second call changes nothing)

    def expire(self, st: SessionState, memory_id: str, reason: str | None = None) -> Op[MemoryRecord]:
        body = {"reason": reason} if reason is not None else None
        return self.upkeep.managed(
            st, MemoryRecord, "POST", _memory_path(st, memory_id, "/expire"), body=body, retry=Retry.SAFE
        )

    def restore(self, st: SessionState, memory_id: str) -> Op[MemoryRecord]:
        return self.upkeep.managed(st, MemoryRecord, "POST", _memory_path(st, memory_id, "/restore"), retry=Retry.SAFE)

    def list_memories(
        self,
        st: SessionState,
        *,
        type: str | Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> Op[MemoryPage]:
        params: list[tuple[str, Any]] = [("type", value) for value in ([type] if isinstance(type, str) else type or [])]
        params.extend(("tags", tag) for tag in tags or [])
        if created_after is not None:
            params.append(("created_after", optional_time(created_after)))
        if created_before is not None:
            params.append(("created_before", optional_time(created_before)))
        params += [("limit", limit), ("cursor", cursor)]
        return self.upkeep.managed(st, MemoryPage, "GET", _agent_path(st, "/memories"), params=params)

    def get_memory(self, st: SessionState, memory_id: str) -> Op[MemoryRecord]:
        return self.upkeep.managed(st, MemoryRecord, "GET", _memory_path(st, memory_id))

    def update_memory(self, st: SessionState, memory_id: str, fields: Mapping[str, Any]) -> Op[MemoryRecord]:
        if not fields:
            raise ValueError("update_memory needs at least one field to change")
        body = {k: list(v) if k == "tags" and v is not None else v for k, v in with_wire_times(fields).items()}
        return self.upkeep.managed(st, MemoryRecord, "PATCH", _memory_path(st, memory_id), body=body)

    def delete_memory(self, st: SessionState, memory_id: str) -> Op[None]:
        return self.upkeep.managed(st, None, "DELETE", _memory_path(st, memory_id))
