"""A stored memory as the API shows it: its record, with its lifecycle (migration 0010)."""

from __future__ import annotations

from datetime import UTC, datetime

from memanto_server.lib.timeutil import iso_z
from memanto_server.memories.repository import MemoryRow
from memanto_server.memories.schemas import MemoryRecord


def expiry_of(row: MemoryRow) -> datetime | None:
    """When the memory stops holding: expired by hand, or its valid_until, whichever is first."""
    ends = [moment for moment in (row.expired_at, row.valid_until) if moment is not None]
    return min(ends) if ends else None


def is_expired(row: MemoryRow, at: datetime | None = None) -> bool:
    expiry = expiry_of(row)
    return expiry is not None and expiry <= (at or datetime.now(UTC))


def record_of(row: MemoryRow) -> MemoryRecord:
    return MemoryRecord(
        memory_id=row.memory_id,
        agent_id=row.agent_id,
        session_id=row.session_id,
        type=row.type,
        title=row.title,
        content=row.content,
        tags=row.tags,
        confidence=round(row.confidence, 4),
        source=row.source,
        metadata=row.metadata,
        created_at=iso_z(row.created_at),
        updated_at=iso_z(row.updated_at or row.created_at),
        occurred_at=iso_z(row.occurred_at or row.created_at),
        valid_until=iso_z(row.valid_until) if row.valid_until else None,
        expired_at=iso_z(row.expired_at) if row.expired_at else None,
        expired_reason=row.expired_reason,
        status="expired" if is_expired(row) else "active",
    )
