"""Wire shapes of the Moorcheh v1 routes that the published `memanto` package calls."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from memanto_server.memories.schemas import Query

NamespaceName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
TopK = Annotated[int, msgspec.Meta(ge=1, le=100)]
Threshold = Annotated[float, msgspec.Meta(ge=0, le=1)]


class CreateNamespaceRequest(msgspec.Struct, kw_only=True):
    namespace_name: NamespaceName
    type: Literal["text", "vector"] = "text"
    vector_dimension: int | None = None


class NamespaceCreated(msgspec.Struct, kw_only=True):
    message: str
    namespace_name: str
    type: str
    vector_dimension: int | None = None


class NamespaceDeleted(msgspec.Struct, kw_only=True):
    message: str
    namespace_name: str


class UploadRequest(msgspec.Struct, kw_only=True):
    # Each document: `id`, `text`, and metadata flat or under `metadata` (compat/documents.py).
    documents: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=100)]


class UploadAccepted(msgspec.Struct, kw_only=True):
    status: str  # "queued", as Moorcheh answers (stored and committed here; embedding may follow)
    submitted_ids: list[str | int]


class SearchRequest(msgspec.Struct, kw_only=True):
    namespaces: Annotated[list[NamespaceName], msgspec.Meta(min_length=1, max_length=20)]
    # Text with Moorcheh's filter tokens: `#memory_type:fact`, `#tag` (a vector query is not served).
    query: Annotated[str, msgspec.Meta(max_length=1000)]
    top_k: TopK = 10
    kiosk_mode: bool = False
    threshold: Threshold | None = None  # with kiosk_mode: this server's min_score


class Hit(msgspec.Struct, kw_only=True):
    id: str
    score: float
    text: str
    metadata: dict[str, Any]


class SearchAnswer(msgspec.Struct, kw_only=True):
    results: list[Hit]
    execution_time: float


class TextItem(msgspec.Struct, kw_only=True):
    id: str
    text: str
    metadata: dict[str, Any]
    created_at: str
    is_summary: bool = False


class Pagination(msgspec.Struct, kw_only=True):
    limit: int
    has_more: bool
    next_token: str | None


class Statistics(msgspec.Struct, kw_only=True):
    total_items: int  # of this page, as Moorcheh counts them
    total_text_chunks: int
    total_summary_chunks: int = 0


class TextData(msgspec.Struct, kw_only=True):
    status: str
    message: str
    namespace: str
    statistics: Statistics
    items: list[TextItem]
    pagination: Pagination
    execution_time: float


class GenerateAnswerRequest(msgspec.Struct, kw_only=True):
    namespace: NamespaceName
    query: Query
    top_k: Annotated[int, msgspec.Meta(ge=1)] | None = None
    # Accepted and not used: the answer is extractive, from the agent's own memories.
    ai_model: str | None = None
    temperature: float | None = None
    header_prompt: str | None = None
    footer_prompt: str | None = None
    chat_history: list[Any] | None = None
    kiosk_mode: bool = False
    threshold: Threshold | None = None


class AnswerGenerated(msgspec.Struct, kw_only=True):
    answer: str
    model: str
    context_count: int
    query: str
    used_context: bool
    sources: list[Hit]
