"""How recall finds memories, and how answer picks the sentences that answer.

Recall tries three ways in turn and pages through the first that finds anything, so
that a query that matches something never comes back empty:

1. `all`: every word (websearch syntax: quotes, `or`, `-word`), ranked full-text search;
2. `any`: any of the words, same ranking (questions in plain language rarely match whole);
3. `fuzzy`: trigram word similarity, for misspelled or partial words.

The cursor names the way and the last row's position, and is bound to the query and
filters it was issued for.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime

import msgspec

from app.errors import InvalidInput
from app.memories.repository import MemoryRow, Position
from app.memories.schemas import MemoryFilters
from app.pagination import decode_cursor, encode_cursor

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


def query_fingerprint(query: str, filters: MemoryFilters, min_score: float | None) -> str:
    digest = hashlib.sha256(msgspec.json.encode([query, filters, min_score]))
    return digest.hexdigest()[:16]


def encode_recall_cursor(mode: str, last: MemoryRow, fingerprint: str) -> str:
    return encode_cursor(
        {
            "m": mode,
            "s": last.score,
            "c": last.created_at.isoformat(),
            "i": last.memory_id,
            "f": fingerprint,
        }
    )


def decode_recall_cursor(cursor: str | None, fingerprint: str) -> tuple[str, Position] | None:
    position = decode_cursor(cursor, ("m", "s", "c", "i", "f"))
    if position is None:
        return None
    if position["f"] != fingerprint or position["m"] not in MODES:
        raise InvalidInput.field("cursor", "belongs to another query or other filters", "query")
    try:
        return position["m"], Position(
            created_at=datetime.fromisoformat(position["c"]), memory_id=str(position["i"]), score=float(position["s"])
        )
    except (TypeError, ValueError):
        raise InvalidInput.field("cursor", "not a cursor this server issued", "query") from None


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
