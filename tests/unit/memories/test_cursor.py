"""Recall cursors: round trip, bound to their query, mode and filters; refused when forged."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from memanto_server.errors import InvalidInput
from memanto_server.memories.schemas import MemoryFilters
from memanto_server.memories.search.cursor import decode_recall_cursor, encode_recall_cursor, query_fingerprint

KEY = (0.51234, datetime(2026, 5, 1, 12, tzinfo=UTC), 17, "6f1c1f43-8d0c-4b7b-9d44-3f58f36f9b11")
AS_OF = datetime(2026, 5, 2, tzinfo=UTC)


def test_a_cursor_round_trips() -> None:
    fingerprint = query_fingerprint("billing", "hybrid", MemoryFilters(), None)
    resume = decode_recall_cursor(encode_recall_cursor(KEY, AS_OF, fingerprint), fingerprint)
    assert resume is not None
    assert resume.key == KEY
    assert resume.as_of == AS_OF
    assert decode_recall_cursor(None, fingerprint) is None


@pytest.mark.parametrize(
    ("query", "mode", "filters", "min_score"),
    [
        ("invoice", "hybrid", MemoryFilters(), None),
        ("billing", "text", MemoryFilters(), None),
        ("billing", "hybrid", MemoryFilters(types=("fact",)), None),
        ("billing", "hybrid", MemoryFilters(), 0.2),
    ],
)
def test_a_cursor_belongs_to_its_query_mode_and_filters(
    query: str, mode: str, filters: MemoryFilters, min_score: float | None
) -> None:
    issued = encode_recall_cursor(KEY, AS_OF, query_fingerprint("billing", "hybrid", MemoryFilters(), None))
    with pytest.raises(InvalidInput):
        decode_recall_cursor(issued, query_fingerprint(query, mode, filters, min_score))


@pytest.mark.parametrize("cursor", ["garbage!!", "eyJ4IjogMX0", "W10"])
def test_a_forged_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidInput):
        decode_recall_cursor(cursor, "x")
