"""Memory ids of a group insert: version-4 UUIDs, as `uuid4()` makes them, all distinct."""

from __future__ import annotations

import uuid

from memanto_server.memories.repository import new_memory_ids


def test_ids_are_distinct_version_4_uuids() -> None:
    ids = new_memory_ids(256)
    assert len(ids) == 256
    assert len(set(ids)) == 256
    for memory_id in ids:
        assert memory_id.version == 4
        assert memory_id.variant == uuid.RFC_4122
        assert uuid.UUID(str(memory_id)) == memory_id


def test_no_ids_for_no_rows() -> None:
    assert new_memory_ids(0) == []
