"""Moorcheh documents and this server's memories, each way (the wire of `compat/moorcheh.py`).

The published `memanto` package stores a memory as a Moorcheh text document: its `id`
(`mem_…`), a `text` card `[TYPE] title\\n\\ncontent` (with `\\n\\nTags: a, b` when tagged) and
flat metadata (`memory_type`, `tags` comma-joined, `confidence`, `source`, `status`,
`created_at`, `provenance`, `actor_id`, …). Here the card is read into the memory's type,
title, content and tags; `created_at` is the time the memory is about (`occurred_at`: MEMANTO
keeps imported history's own dates there); an `expired` status is a `valid_until`; the
document id is the memory's idempotency key (`moorcheh:<id>`, so an upload sent again stores
nothing twice); every other metadata field is kept in the memory's `metadata`. Reading builds
the same document back.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from memanto_server.agents.schemas import NAMESPACE_PREFIX
from memanto_server.errors import FieldProblem, InvalidInput, NotFound
from memanto_server.memories.records import is_expired
from memanto_server.memories.repository import MemoryRow
from memanto_server.memories.schemas import MEMORY_TYPES, RememberRequest

ID_PREFIX = "moorcheh:"  # the idempotency key of a memory stored from a document
# memanto titles a memory with its content when given no title (cut at 50 characters, with
# "..."). Such a title says nothing the content does not, so it is not stored as one; this
# metadata flag lets the card be built back as memanto wrote it.
TITLE_FROM_CONTENT = "title_from_content"
_NAMESPACE = re.compile(re.escape(NAMESPACE_PREFIX) + r"([A-Za-z0-9_-]{1,64})")
_CARD = re.compile(r"\[(?P<type>[A-Za-z]+)\] (?P<title>[^\n]*)\n\n(?P<body>.+)", re.DOTALL)
_TAGS_FOOTER = "\n\nTags: "
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")

# Document fields that are a memory's own columns; the rest are kept in its metadata.
_OWN_FIELDS = frozenset(
    {"id", "text", "metadata", "memory_type", "type", "tags", "confidence", "source", "created_at", "agent_id"}
)
_LIFECYCLE_FIELDS = frozenset({"status", "expired_at", "updated_at"})
# The document's names of the fields a validation error names.
_WIRE_NAMES = {"content": "text", "type": "memory_type", "occurred_at": "created_at", "valid_until": "expired_at"}

DocumentId = Annotated[str, msgspec.Meta(min_length=1, max_length=180, pattern=r"^\S+$")]


def agent_of(namespace: str) -> str | None:
    """The agent a namespace names (`memanto_agent_{agent_id}`), or None."""
    match = _NAMESPACE.fullmatch(namespace)
    return match.group(1) if match else None


def namespace_agent(namespace: str) -> str:
    """The agent of a namespace in a path: a namespace of another shape does not exist here."""
    agent_id = agent_of(namespace)
    if agent_id is None:
        raise NotFound(f"namespace '{namespace}' not found", code="agent_not_found")
    return agent_id


def _fields(document: dict[str, Any]) -> dict[str, Any]:
    """The document's metadata, nested (the API's form) or flat (memanto's), in one dict."""
    nested = document.get("metadata")
    flat = {k: v for k, v in document.items() if k != "metadata"}
    return {**flat, **nested} if isinstance(nested, dict) else flat


def _card(text: str, memory_type: str | None) -> tuple[str | None, str | None, str, list[str] | None]:
    """(type, title, content, footer tags) read from a memanto card; the text as content otherwise."""
    match = _CARD.fullmatch(text)
    card_type = match.group("type").lower() if match else None
    if match is None or card_type not in MEMORY_TYPES or len(match.group("title")) > 100:
        return memory_type, None, text, None
    body = match.group("body")
    content, marker, footer = body.rpartition(_TAGS_FOOTER)
    footer_tags = [t.strip() for t in footer.split(",") if t.strip()] if marker and content else None
    if footer_tags is None:
        content = body
    return memory_type or card_type, match.group("title").strip() or None, content, footer_tags


def derived_title(content: str) -> str:
    """The title memanto gives a memory from its content."""
    return f"{content[:50]}..." if len(content) > 50 else content


def _tags(value: Any) -> Any:
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


def _expiry(fields: dict[str, Any]) -> Any:
    if str(fields.get("status", "")).lower() != "expired":
        return None
    return fields.get("expired_at") or datetime.now(UTC).isoformat()


def memory_of(document: dict[str, Any], index: int) -> RememberRequest:
    """The memory a document asks to store, or a 422 naming `documents[index].<field>`."""
    fields = _fields(document)
    text = fields.get("text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput.field(f"documents[{index}].text", "required: a non-empty string", "body")
    raw_id = fields.get("id")
    try:
        doc_id = msgspec.convert(str(raw_id) if isinstance(raw_id, int) else raw_id, DocumentId)
    except msgspec.ValidationError:
        raise InvalidInput.field(
            f"documents[{index}].id", "required: a string or integer without spaces", "body"
        ) from None
    memory_type, title, content, footer_tags = _card(text, fields.get("memory_type") or fields.get("type"))
    tags = _tags(fields.get("tags"))
    if footer_tags is not None and footer_tags != tags:  # the footer was content, not generated from the tags
        content = f"{content}{_TAGS_FOOTER}{', '.join(footer_tags)}"
    extras = {k: v for k, v in fields.items() if k not in _OWN_FIELDS | _LIFECYCLE_FIELDS and v is not None}
    if title is not None and title == derived_title(content):
        title, extras[TITLE_FROM_CONTENT] = None, True
    wanted = {
        "content": content,
        "type": memory_type,
        "title": title,
        "tags": tags if tags is not None else [],
        "confidence": fields.get("confidence", 0.8),
        "source": fields.get("source"),
        "metadata": extras or None,
        "idempotency_key": ID_PREFIX + doc_id,
        "occurred_at": fields.get("created_at"),
        "valid_until": _expiry(fields),
    }
    try:
        return msgspec.convert({k: v for k, v in wanted.items() if v is not None}, RememberRequest, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _AT.search(message)
        path = match.group("path") if match else ""
        head, _, rest = path.partition("[")
        field = _WIRE_NAMES.get(head, head) + (f"[{rest}" if rest else "")
        problem = FieldProblem(field=f"documents[{index}].{field}", message=_AT.sub("", message), source="body")
        raise InvalidInput(f"{problem.field}: {problem.message}", errors=[problem]) from None


def document_id(memory_id: str, idempotency_key: str | None) -> str:
    """The id a client knows a memory by: its document's, or the memory id."""
    if idempotency_key and idempotency_key.startswith(ID_PREFIX):
        return idempotency_key.removeprefix(ID_PREFIX)
    return memory_id


def text_of(row: MemoryRow) -> str:
    """The document text: memanto's card when the memory has a title, else the content."""
    title = row.title
    if title is None and (row.metadata or {}).get(TITLE_FROM_CONTENT) is True:
        title = derived_title(row.content)
    if title is None:
        return row.content
    text = f"[{row.type.upper()}] {title}\n\n{row.content}"
    return f"{text}{_TAGS_FOOTER}{', '.join(row.tags)}" if row.tags else text


def metadata_of(row: MemoryRow) -> dict[str, Any]:
    """The document's metadata: memanto's fields, over whatever else the memory's metadata keeps."""
    expired = is_expired(row)
    ends = [m for m in (row.expired_at, row.valid_until) if m is not None]
    fields: dict[str, Any] = {k: v for k, v in (row.metadata or {}).items() if k != TITLE_FROM_CONTENT}
    fields.update(
        memory_type=row.type,
        agent_id=row.agent_id,
        source=row.source,
        confidence=round(row.confidence, 4),
        status="expired" if expired else "active",
        created_at=(row.occurred_at or row.created_at).isoformat(),
        updated_at=(row.updated_at or row.created_at).isoformat(),
    )
    if row.tags:
        fields["tags"] = ",".join(row.tags)
    if expired:
        fields["expired_at"] = min(ends).isoformat()
        if row.expired_reason:
            fields["expired_by"] = fields.get("expired_by") or row.expired_reason
    return fields
