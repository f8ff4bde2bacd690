"""Wire shapes of the memory routes (api.md, Memories)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, UnsetType

from memanto_server.agents.schemas import namespace_of
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

ExpireReason = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]

RecallMode = Literal["hybrid", "text", "semantic"]
RECALL_MODES: tuple[str, ...] = RecallMode.__args__  # type: ignore[attr-defined]


class RememberRequest(msgspec.Struct, kw_only=True):
    content: Content
    # `null` is the default type, as MEMANTO's clients send it.
    type: MemoryType | None = "fact"
    title: Title | None = None
    tags: Tags = msgspec.field(default_factory=list)
    confidence: Confidence = 0.8
    source: Source | None = None
    metadata: dict[str, Any] | None = None
    # In a batch, an item's own Idempotency-Key (a single remember takes the header).
    idempotency_key: IdempotencyKey | None = None
    # The time the memory is about (default: when it is stored), and until when it holds.
    occurred_at: Instant | None = None
    valid_until: Instant | None = None

    def __post_init__(self) -> None:
        if self.type is None:
            self.type = "fact"


class BatchRememberRequest(msgspec.Struct, kw_only=True):
    memories: Annotated[list[RememberRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class StoredMemory(msgspec.Struct, kw_only=True):
    memory_id: str
    agent_id: str
    session_id: str
    type: str
    created_at: str
    status: str = "stored"
    namespace: str = ""  # MEMANTO's name for the agent's memories

    def __post_init__(self) -> None:
        self.namespace = namespace_of(self.agent_id)


class BatchStored(msgspec.Struct, kw_only=True):
    stored: int  # newly stored; items whose idempotency_key was seen before are not stored again
    memory_ids: list[str]  # one per item, in order (the first memory's id for a repeated key)
    already_stored: int = 0
    # MEMANTO's names: a batch is all or nothing, so every item submitted succeeded.
    total_submitted: int = 0
    successful: int = 0
    failed: int = 0

    def __post_init__(self) -> None:
        self.total_submitted = self.successful = len(self.memory_ids)
        self.failed = 0


class MemoryFilters(msgspec.Struct, kw_only=True, frozen=True):
    """Filters shared by recall and the memory list."""

    types: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    # Expired memories (expired by hand, or past their valid_until) are left out unless asked for.
    include_expired: bool = False


class RecallRequest(msgspec.Struct, kw_only=True):
    query: Query
    limit: RecallLimit = RECALL_PAGE.default
    type: MemoryType | list[MemoryType] | None = None
    tags: Tags | None = None
    created_after: Instant | None = None
    created_before: Instant | None = None
    min_score: Score | None = None
    cursor: Cursor | None = None
    # MEMANTO's name for min_score.
    min_similarity: Score | None = None
    include_expired: bool = False
    # hybrid: every signal; text: words only (full text, typo corrections); semantic: meaning only.
    mode: RecallMode = "hybrid"

    def __post_init__(self) -> None:
        if self.min_score is None and self.min_similarity is not None:
            self.min_score = self.min_similarity
        self.min_similarity = None

    def filters(self) -> MemoryFilters:
        types = [self.type] if isinstance(self.type, str) else self.type
        return MemoryFilters(
            types=tuple(types) if types else None,
            tags=tuple(self.tags) if self.tags else None,
            created_after=self.created_after,
            created_before=self.created_before,
            include_expired=self.include_expired,
        )


class RecalledMemory(msgspec.Struct, kw_only=True):
    memory_id: str
    content: str
    type: str
    title: str | None
    tags: list[str]
    confidence: float
    score: float  # 0-1: at or above 0.6 a strong match, below 0.2 an incidental one (docs/api.md)
    created_at: str
    session_id: str
    signals: list[str] = msgspec.field(default_factory=list)  # what matched: text, typo, semantic
    # The lifecycle: the time the memory is about, and "expired" for one recalled with include_expired.
    occurred_at: str | None = None
    status: str = "active"
    # MEMANTO's names for memory_id and content.
    id: str = ""
    text: str = ""

    def __post_init__(self) -> None:
        self.id = self.memory_id
        self.text = self.content


class RecallResult(msgspec.Struct, kw_only=True):
    agent_id: str
    session_id: str
    query: str
    memories: list[RecalledMemory]
    count: int
    next_cursor: str | None
    mode: str  # the signals ranked: hybrid, text or semantic (hybrid is text without an embedder)


class AnswerRequest(msgspec.Struct, kw_only=True):
    question: Query
    limit: AnswerLimit = ANSWER_SOURCES.default
    include_expired: bool = False


class AnswerResult(msgspec.Struct, kw_only=True):
    agent_id: str
    session_id: str
    question: str
    answer: str
    sources: list[RecalledMemory]
    mode: str = "extractive"
    confidence: float = 0.0  # the recall score of the memory that answers; 0 when nothing does


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
    # The lifecycle: the time the memory is about, until when it holds, and its expiry.
    occurred_at: str | None = None
    valid_until: str | None = None
    expired_at: str | None = None
    expired_reason: str | None = None
    status: str = "active"  # "expired" once expired by hand or past valid_until


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
    occurred_at: Instant | UnsetType = UNSET
    valid_until: Instant | UnsetType | None = UNSET


# The lifecycle (api.md, Memory lifecycle): expire and restore, and recalls in time.


class ExpireRequest(msgspec.Struct, kw_only=True):
    reason: ExpireReason | None = None


class _TimelineFilters(msgspec.Struct, kw_only=True):
    limit: RecallLimit = RECALL_PAGE.default
    type: MemoryType | list[MemoryType] | None = None
    tags: Tags | None = None
    created_after: Instant | None = None
    created_before: Instant | None = None
    cursor: Cursor | None = None

    def filters(self, include_expired: bool = False) -> MemoryFilters:
        types = [self.type] if isinstance(self.type, str) else self.type
        return MemoryFilters(
            types=tuple(types) if types else None,
            tags=tuple(self.tags) if self.tags else None,
            created_after=self.created_after,
            created_before=self.created_before,
            include_expired=include_expired,
        )


class RecentRequest(_TimelineFilters, kw_only=True):
    """The memories stored most recently, newest first."""

    include_expired: bool = False


class AsOfRequest(_TimelineFilters, kw_only=True):
    """What the agent knew at `as_of`: memories that had occurred by then and were not yet expired."""

    as_of: Instant


class ChangedSinceRequest(_TimelineFilters, kw_only=True):
    """Memories created, changed, expired or restored after `since`, most recent change first."""

    since: Instant


class TimelineMemory(MemoryRecord, kw_only=True):
    """A memory record as the lifecycle recalls return it."""

    # recall/changed-since: "created", "updated" or "expired" (MEMANTO's change_type).
    change_type: str | None = None
    # MEMANTO's names for memory_id and content.
    id: str = ""
    text: str = ""

    def __post_init__(self) -> None:
        self.id = self.memory_id
        self.text = self.content


class TimelineResult(msgspec.Struct, kw_only=True):
    agent_id: str
    session_id: str
    memories: list[TimelineMemory]
    count: int
    next_cursor: str | None
    temporal_mode: str  # "recent", "as_of" or "changed_since" (MEMANTO's name for the recall)
    as_of: str | None = None  # recall/as-of
    since: str | None = None  # recall/changed-since
    # MEMANTO's names for as_of and since.
    as_of_date: str | None = None
    since_date: str | None = None

    def __post_init__(self) -> None:
        self.as_of_date = self.as_of
        self.since_date = self.since
