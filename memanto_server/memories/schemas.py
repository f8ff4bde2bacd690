"""Wire shapes of the memory routes (api.md, Memories)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, UnsetType

from memanto_server.limits import (
    ANSWER_SOURCES,
    RECALL_PAGE,
    AnswerLimit,
    Confidence,
    Content,
    Cursor,
    IdempotencyKey,
    Instant,
    Query,
    RecallLimit,
    Score,
    Source,
    Tags,
    Title,
)
from memanto_server.limits import MAX_BATCH as MAX_BATCH  # the clients read it from here

MemoryType = Literal[
    "fact",
    "preference",
    "goal",
    "decision",
    "artifact",
    "learning",
    "event",
    "instruction",
    "relationship",
    "context",
    "observation",
    "commitment",
    "error",
]
MEMORY_TYPES: tuple[str, ...] = MemoryType.__args__  # type: ignore[attr-defined]


class RememberRequest(msgspec.Struct, kw_only=True):
    content: Content
    type: MemoryType = "fact"
    title: Title | None = None
    tags: Tags = msgspec.field(default_factory=list)
    confidence: Confidence = 0.8
    source: Source | None = None
    metadata: dict[str, Any] | None = None
    # In a batch, an item's own Idempotency-Key (a single remember takes the header).
    idempotency_key: IdempotencyKey | None = None


class BatchRememberRequest(msgspec.Struct, kw_only=True):
    memories: Annotated[list[RememberRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class StoredMemory(msgspec.Struct, kw_only=True):
    memory_id: str
    agent_id: str
    session_id: str
    type: str
    created_at: str
    status: str = "stored"


class BatchStored(msgspec.Struct, kw_only=True):
    stored: int  # newly stored; items whose idempotency_key was seen before are not stored again
    memory_ids: list[str]  # one per item, in order (the first memory's id for a repeated key)
    already_stored: int = 0


class MemoryFilters(msgspec.Struct, kw_only=True, frozen=True):
    """Filters shared by recall and the memory list."""

    types: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class RecallRequest(msgspec.Struct, kw_only=True):
    query: Query
    limit: RecallLimit = RECALL_PAGE.default
    type: MemoryType | list[MemoryType] | None = None
    tags: Tags | None = None
    created_after: Instant | None = None
    created_before: Instant | None = None
    min_score: Score | None = None
    cursor: Cursor | None = None

    def filters(self) -> MemoryFilters:
        types = [self.type] if isinstance(self.type, str) else self.type
        return MemoryFilters(
            types=tuple(types) if types else None,
            tags=tuple(self.tags) if self.tags else None,
            created_after=self.created_after,
            created_before=self.created_before,
        )


class RecalledMemory(msgspec.Struct, kw_only=True):
    memory_id: str
    content: str
    type: str
    title: str | None
    tags: list[str]
    confidence: float
    score: float
    created_at: str
    session_id: str


class RecallResult(msgspec.Struct, kw_only=True):
    agent_id: str
    session_id: str
    query: str
    memories: list[RecalledMemory]
    count: int
    next_cursor: str | None
    match: str  # "all" words, "any" word, or "fuzzy" (trigram similarity)


class AnswerRequest(msgspec.Struct, kw_only=True):
    question: Query
    limit: AnswerLimit = ANSWER_SOURCES.default


class AnswerResult(msgspec.Struct, kw_only=True):
    agent_id: str
    session_id: str
    question: str
    answer: str
    sources: list[RecalledMemory]
    mode: str = "extractive"


class MemoryRecord(msgspec.Struct, kw_only=True):
    memory_id: str
    agent_id: str
    session_id: str
    type: str
    title: str | None
    content: str
    tags: list[str]
    confidence: float
    source: str | None
    metadata: dict[str, Any] | None
    created_at: str
    updated_at: str


class MemoryPage(msgspec.Struct, kw_only=True):
    agent_id: str
    memories: list[MemoryRecord]
    count: int
    next_cursor: str | None


class MemoryPatch(msgspec.Struct, kw_only=True):
    """Only the fields present change; `null` clears the nullable ones. At least one field."""

    # What the OpenAPI document adds to the schema msgspec makes of it (openapi.py).
    __json_schema_extra__: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {"required": [name]} for name in ("content", "type", "title", "tags", "confidence", "source", "metadata")
        ]
    }

    content: Content | UnsetType = UNSET
    type: MemoryType | UnsetType = UNSET
    title: Title | UnsetType | None = UNSET
    tags: Tags | UnsetType = UNSET
    confidence: Confidence | UnsetType = UNSET
    source: Source | UnsetType | None = UNSET
    metadata: dict[str, Any] | UnsetType | None = UNSET
