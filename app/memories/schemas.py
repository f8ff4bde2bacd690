"""Wire shapes of the memory routes (api.md, Memories)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

MemoryType = Literal[
    "fact", "preference", "goal", "decision", "artifact", "learning", "event",
    "instruction", "relationship", "context", "observation", "commitment", "error",
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

MAX_METADATA_BYTES = 4096


class RememberRequest(msgspec.Struct, kw_only=True):
    content: Content
    type: MemoryType = "fact"
    title: Title | None = None
    tags: Tags = msgspec.field(default_factory=list)
    confidence: Confidence = 0.8
    source: Source | None = None
    metadata: dict[str, Any] | None = None


class StoredMemory(msgspec.Struct, kw_only=True):
    memory_id: str
    agent_id: str
    session_id: str
    type: str
    created_at: str
    status: str = "stored"


class RecallRequest(msgspec.Struct, kw_only=True):
    query: Query
    limit: Limit = 10
    type: MemoryType | list[MemoryType] | None = None


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
    next_cursor: str | None = None
