"""Wire shapes of the memory routes (api.md, Memories)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

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

Content = Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]
Title = Annotated[str, msgspec.Meta(max_length=100)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=20)]
Confidence = Annotated[float, msgspec.Meta(ge=0, le=1)]
Source = Annotated[str, msgspec.Meta(max_length=200)]
Query = Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=100)]
Score = Annotated[float, msgspec.Meta(ge=0)]
Cursor = Annotated[str, msgspec.Meta(max_length=1024)]

RecallMode = Literal["hybrid", "text", "semantic"]
RECALL_MODES: tuple[str, ...] = RecallMode.__args__  # type: ignore[attr-defined]

IdempotencyKey = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]

MAX_METADATA_BYTES = 4096
MAX_BATCH = 100


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
    limit: Limit = 10
    type: MemoryType | list[MemoryType] | None = None
    tags: Tags | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    min_score: Score | None = None
    cursor: Cursor | None = None
    # hybrid: every signal; text: words only (full text, typo corrections); semantic: meaning only.
    mode: RecallMode = "hybrid"

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
    score: float  # 0-1: at or above 0.6 a strong match, below 0.2 an incidental one (docs/api.md)
    created_at: str
    session_id: str
    signals: list[str] = msgspec.field(default_factory=list)  # what matched: text, typo, semantic


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
    limit: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5


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


class MemoryPage(msgspec.Struct, kw_only=True):
    agent_id: str
    memories: list[MemoryRecord]
    count: int
    next_cursor: str | None


class MemoryPatch(msgspec.Struct, kw_only=True):
    """Only the fields present change; `null` clears the nullable ones."""

    content: Content | UnsetType = UNSET
    type: MemoryType | UnsetType = UNSET
    title: Title | UnsetType | None = UNSET
    tags: Tags | UnsetType = UNSET
    confidence: Confidence | UnsetType = UNSET
    source: Source | UnsetType | None = UNSET
    metadata: dict[str, Any] | UnsetType | None = UNSET
