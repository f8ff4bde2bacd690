"""Recall cursors: where the next page starts, bound to the query it was issued for.

A page is the ranked list after the last memory shown, in the order of `ranking.rank`
(score, creation time, insertion order, memory id; all descending). The cursor also
holds the moment of the first page: later pages rank the memories that existed then, so
that memories stored while a caller pages neither push others between pages nor move
the recency of those already shown.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

import msgspec

from memanto_server.errors import InvalidInput
from memanto_server.lib.pagination import decode_cursor, encode_cursor
from memanto_server.memories.schemas import MemoryFilters


class RecallCursor(msgspec.Struct, forbid_unknown_fields=True):
    s: float  # score of the last memory shown
    c: datetime  # its creation time
    q: int  # its insertion order (-1 when it has none)
    i: uuid.UUID  # its memory id
    n: datetime  # the moment of the first page
    f: str  # fingerprint of the query, mode and filters


class Resume(msgspec.Struct, frozen=True):
    """The last memory shown, as its ranking key, and the moment of the first page."""

    key: tuple[float, datetime, int, str]
    as_of: datetime


def query_fingerprint(query: str, mode: str, filters: MemoryFilters, min_score: float | None) -> str:
    digest = hashlib.sha256(msgspec.json.encode([query, mode, filters, min_score]))
    return digest.hexdigest()[:16]


def encode_recall_cursor(key: tuple[float, datetime, int, str], as_of: datetime, fingerprint: str) -> str:
    score, created_at, seq, memory_id = key
    return encode_cursor(RecallCursor(s=score, c=created_at, q=seq, i=uuid.UUID(memory_id), n=as_of, f=fingerprint))


def decode_recall_cursor(cursor: str | None, fingerprint: str) -> Resume | None:
    position = decode_cursor(cursor, RecallCursor)
    if position is None:
        return None
    if position.f != fingerprint:
        raise InvalidInput.field("cursor", "belongs to another query, mode or other filters", "query")
    return Resume(key=(position.s, position.c, position.q, str(position.i)), as_of=position.n)
