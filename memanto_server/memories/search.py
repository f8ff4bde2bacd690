"""How recall finds memories, and how answer picks the sentences that answer.

Recall tries three ways in turn and pages through the first that finds anything, so
that a query that matches something never comes back empty:

1. `all`: every word (websearch syntax: quotes, `or`, `-word`), ranked full-text search;
2. `any`: any of the words, same ranking (questions in plain language rarely match whole);
3. `fuzzy`: each meaningful word replaced by its closest words in the agent's own
   lexicon (pg_trgm word similarity), for misspelled or partial words, then ranked
   full-text search over those.

All three rank with the same `ts_rank_cd`, so scores (and `min_score`) mean the same in
each. The cursor names the way, the search text it settled on and the last row's
position, and is bound to the query and filters it was issued for.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from datetime import datetime

import msgspec

from memanto_server.errors import InvalidInput
from memanto_server.lib.pagination import decode_cursor, encode_cursor
from memanto_server.memories.repository import MemoryRow, Position
from memanto_server.memories.schemas import MemoryFilters

MODES = ("all", "any", "fuzzy")

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

# Words that carry no meaning of their own in a question.
STOP_WORDS = frozenset(
    (
        "a about above after again against all am an and any are as at be because been before being below between "
        "both but by can could did do does doing down during each few for from further had has have having he her "
        "here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not "
        "now of off on once only or other our ours ourselves out over own same she should so some such than that the "
        "their theirs them themselves then there these they this those through to too under until up very was we "
        "were what when where which while who whom why will with would you your yours yourself yourselves tell know"
    ).split()
)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def any_word_query(text: str) -> str | None:
    """`a or b or c` over the meaningful words, or None when there are fewer than two."""
    terms = [w for w in dict.fromkeys(words(text)) if w not in STOP_WORDS and w not in ("or", "and")]
    return " or ".join(terms) if len(terms) > 1 else None


def fuzzy_words(text: str, most: int = 8) -> list[str]:
    """The words worth correcting: meaningful, and long enough to have trigrams."""
    return [w for w in dict.fromkeys(words(text)) if len(w) >= 3 and w not in STOP_WORDS][:most]


class Resume(msgspec.Struct, frozen=True):
    """Where a cursor continues: the way of matching, its search text, the last position."""

    mode: str
    text: str
    position: Position


def query_fingerprint(query: str, filters: MemoryFilters, min_score: float | None) -> str:
    digest = hashlib.sha256(msgspec.json.encode([query, filters, min_score]))
    return digest.hexdigest()[:16]


class RecallCursor(msgspec.Struct, forbid_unknown_fields=True):
    m: str  # the way of matching
    t: str  # the search text it settled on
    s: float  # score, created_at and memory_id of the last memory shown
    c: datetime
    i: uuid.UUID
    f: str  # fingerprint of the query and filters


def encode_recall_cursor(mode: str, text: str, last: MemoryRow, fingerprint: str) -> str:
    return encode_cursor(
        RecallCursor(m=mode, t=text, s=last.score, c=last.created_at, i=uuid.UUID(last.memory_id), f=fingerprint)
    )


def decode_recall_cursor(cursor: str | None, fingerprint: str) -> Resume | None:
    position = decode_cursor(cursor, RecallCursor)
    if position is None:
        return None
    if position.f != fingerprint or position.m not in MODES:
        raise InvalidInput.field("cursor", "belongs to another query or other filters", "query")
    return Resume(
        mode=position.m,
        text=position.t,
        position=Position(created_at=position.c, memory_id=str(position.i), score=position.s),
    )


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


class Extract(msgspec.Struct, frozen=True):
    sentence: str
    memory_id: str
    score: float


def extract_answer(question: str, memories: list[MemoryRow], max_sentences: int = 3) -> list[Extract]:
    """The sentences of the memories that share the most meaning-bearing words with the question.

    A sentence scores the share of the question's words it contains, weighted by how
    rare each word is among the candidate sentences and by the memory's own rank; the
    best sentences, and those close to them, make the answer.
    """
    terms = {_stem(w) for w in words(question) if w not in STOP_WORDS}
    if not terms:
        return []
    candidates: list[tuple[str, str, set[str], float]] = []
    for rank, memory in enumerate(memories):
        text = f"{memory.title}. {memory.content}" if memory.title else memory.content
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            if sentence:
                stems = {_stem(w) for w in words(sentence)}
                candidates.append((sentence, memory.memory_id, stems & terms, 1.0 / (1 + 0.1 * rank)))
    if not candidates:
        return []
    document_frequency = {t: sum(1 for c in candidates if t in c[2]) for t in terms}
    total = len(candidates)
    weight = {t: math.log(1 + total / df) if df else 0.0 for t, df in document_frequency.items()}
    full = sum(math.log(1 + total) for _ in terms)
    scored = [
        Extract(sentence, memory_id, sum(weight[t] for t in shared) / full * rank_weight)
        for sentence, memory_id, shared, rank_weight in candidates
        if shared
    ]
    if not scored:
        return []
    scored.sort(key=lambda e: e.score, reverse=True)
    best = scored[0].score
    chosen: list[Extract] = []
    for extract in scored:
        if extract.score < best * 0.5 or len(chosen) == max_sentences:
            break
        if extract.sentence not in {c.sentence for c in chosen}:
            chosen.append(extract)
    return chosen
