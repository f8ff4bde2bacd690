"""How recall ranks: every signal at once, fused into one score on a fixed scale.

Signals of a memory for a query:
- `text`: the query's words found in it (full-text, stemmed; character pairs for scripts
  without spaces), each weighed by how rare it is among the agent's memories (an inverse
  document frequency, as BM25 does) and by where and how often it occurs (title above
  content, more mentions above one, with diminishing returns). The text score is the
  share of the query's weight that the memory holds, so a memory holding the one rare
  word of a question outranks one holding only its common words.
- `typo`: a close spelling of a query word that no memory holds (pg_trgm and edit
  distance over the agent's own words), counted as that word at a lower weight. It is
  looked for whether or not other words of the query match.
- `semantic`: cosine similarity of the memory's embedding to the query's.

The two are mapped onto [0, 1] and combined as independent evidence,
`1 - (1 - text) * (1 - semantic)`: either signal alone can make a strong match, both
together make a stronger one, and neither pulls the other down (a paraphrase that shares
no word with its memory is not penalised for that). A cosine at or below
`SEMANTIC_FLOOR` is no evidence at all: every memory is a little similar to every query.

Among near-equal matches the later memory ranks first: an agent corrects what it knows
by storing the new fact, so the newest candidates get a small bonus (`RECENCY_BONUS`
times their recency rank among the candidates, 1 for the newest). Ties are broken by
creation time and then by the order of insertion (`seq`: the rows of one batch share a
creation time), newest first, then by memory id.

Knowledge updates go further (`contenders`, `superseding`, `supersede`): a later memory
that matches the query nearly as well as an earlier one, on the same subject, is lifted
just above it. Same subject: they hold the query through mostly the same words (or both
through meaning alone), their embeddings are alike, and the earlier memory is, of the
earlier candidates, the one the later resembles most: an update replaces the fact it is
closest to, not every fact that shares a name with it.

The score scale (docs/api.md): at or above `STRONG` a real match, below `WEAK` an
incidental one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from memanto_server.memories.search.grammar import GRAM, TYPO, Term

# Weight of a close spelling against the word itself.
TYPO_WEIGHT = 0.7
# Saturation of a term's strength (ts_rank_cd: 1.0 per title occurrence, 0.4 per content
# occurrence): one title occurrence scores 1, one content occurrence 0.7, more approach 1.4.
SATURATION = 0.4
GRAM_STRENGTH = 0.8
# Text evidence: the share of the query's weight held, raised to soften partial matches.
TEXT_CEILING = 0.9
TEXT_POWER = 1.0
# Semantic evidence: a linear map of cosine similarity from SEMANTIC_FLOOR (none) to
# SEMANTIC_FULL (as strong as evidence gets), times SEMANTIC_CEILING.
SEMANTIC_FLOOR = 0.15
SEMANTIC_FULL = 0.6
SEMANTIC_CEILING = 0.9
RECENCY_BONUS = 0.02
# Knowledge updates: of two memories on one subject that match a query nearly as well, the
# later ranks first. Nearly as well: the later has at least NEARLY_AS_RELEVANT of the
# earlier's relevance, or, in meaning, a cosine similarity to the query at most
# NEARLY_AS_SIMILAR below the earlier's while holding at least NEARLY_AS_RELEVANT of its
# words (the relevance scale stretches small differences of cosine near SEMANTIC_FLOOR).
# One subject: they hold the query through mostly the same words (SAME_SUBJECT_WORDS of the
# weight of the one that holds less) or both through meaning alone, and, with embeddings,
# their embeddings are at least SAME_SUBJECT_SIMILARITY alike and the earlier is the
# earlier candidate most alike to the later.
NEARLY_AS_RELEVANT = 0.8
NEARLY_AS_SIMILAR = 0.1
SAME_SUBJECT_SIMILARITY = 0.5
SAME_SUBJECT_WORDS = 0.5
# How far down the ranked list later memories are looked for.
SUPERSEDE_WINDOW = 20

STRONG = 0.6
WEAK = 0.2

TEXT, SEMANTIC = "text", "semantic"


class Corpus(msgspec.Struct, frozen=True):
    """How common each term is among the agent's memories (counted up to a cap) and how
    many memories the agent has (up to a cap); `searchable` is False for a term that
    full-text search drops (a stop word)."""

    frequencies: tuple[int, ...]
    searchable: tuple[bool, ...]
    population: int


class Candidate(msgspec.Struct, frozen=True):
    memory_id: str
    created_at: datetime
    seq: int | None


class TextShare(msgspec.Struct, frozen=True):
    share: float
    signals: tuple[str, ...]  # `text` (a word itself), `typo` (a close spelling), or both
    held: tuple[tuple[int, float], ...] = ()  # (query word, its weight) of each word held


class Ranked(msgspec.Struct, frozen=True):
    memory_id: str
    score: float
    signals: tuple[str, ...]
    relevance: float  # the score before the recency bonus
    share: float = 0.0  # of the query's words held (TextShare.share)
    similarity: float | None = None  # cosine similarity to the query, when embedded


NO_TEXT = TextShare(0.0, ())


def inverse_frequency(frequency: int, population: int) -> float:
    """BM25's inverse document frequency, never negative."""
    population = max(population, frequency)
    return math.log(1 + (population - frequency + 0.5) / (frequency + 0.5))


def term_weight(strength: float, kind: str) -> float:
    if strength <= 0:
        return 0.0
    if kind == GRAM:
        return GRAM_STRENGTH
    return (1 + SATURATION) * strength / (strength + SATURATION)


class TextScorer:
    """The text evidence of memories for one query over one corpus."""

    def __init__(self, terms: Sequence[Term], corpus: Corpus) -> None:
        self.terms = terms
        self.idf = [
            inverse_frequency(max(frequency, 1), corpus.population) if searchable else 0.0
            for frequency, searchable in zip(corpus.frequencies, corpus.searchable, strict=True)
        ]
        # A query word weighs as its rarest form that some memory holds (a misspelled word,
        # which none holds, as its correction); one that nothing holds as a word held once.
        held: dict[int, float] = {}
        absent: dict[int, float] = {}
        for term, idf, frequency, searchable in zip(
            terms, self.idf, corpus.frequencies, corpus.searchable, strict=True
        ):
            if not searchable or (frequency == 0 and term.kind in (GRAM, TYPO)):
                # A stop word is nothing; a character pair or a correction that no memory
                # holds (a pair across two words of the query, say) is not a word asked for.
                continue
            weights = held if frequency > 0 else absent
            weights[term.group] = max(weights.get(term.group, 0.0), idf)
        groups = {**absent, **held}
        self.total = sum(groups.values())
        # Memories that hold the query's terms alike score alike: a large agent's hundreds of
        # candidates have a handful of distinct strengths between them.
        self._shares: dict[tuple[float, ...], TextShare] = {}

    def share(self, strengths: Sequence[float]) -> TextShare:
        """The share of the query's weight that a memory holds, and how it holds it."""
        key = tuple(strengths)
        found = self._shares.get(key)
        if found is None:
            found = self._shares[key] = self._share(key)
        return found

    def _share(self, strengths: tuple[float, ...]) -> TextShare:
        if self.total <= 0:
            return TextShare(0.0, ())
        best: dict[int, tuple[float, bool]] = {}
        for term, idf, strength in zip(self.terms, self.idf, strengths, strict=True):
            value = idf * term.weight * term_weight(strength, term.kind)
            if value > best.get(term.group, (0.0, False))[0]:
                best[term.group] = (value, term.kind == TYPO)
        held = sum(v for v, _ in best.values())
        ways = {TYPO if typo else TEXT for _, typo in best.values()}
        words = tuple(sorted((group, value / self.total) for group, (value, _) in best.items()))
        return TextShare(min(1.0, held / self.total), tuple(sorted(ways)), words)


def text_evidence(share: float) -> float:
    return TEXT_CEILING * share**TEXT_POWER if share > 0 else 0.0


def semantic_evidence(similarity: float | None) -> float:
    if similarity is None or similarity <= SEMANTIC_FLOOR:
        return 0.0
    return SEMANTIC_CEILING * min(1.0, (similarity - SEMANTIC_FLOOR) / (SEMANTIC_FULL - SEMANTIC_FLOOR))


def fuse(text: float, semantic: float) -> float:
    return 1 - (1 - text) * (1 - semantic)


def order_key(candidate: Candidate) -> tuple[datetime, int, str]:
    """Newer is greater: creation time, then insertion order, then memory id."""
    return (candidate.created_at, candidate.seq if candidate.seq is not None else -1, candidate.memory_id)


def rank(
    candidates: Iterable[Candidate],
    text: dict[str, TextShare],
    similarity: dict[str, float],
) -> list[Ranked]:
    """Every candidate with some evidence, best first. `text` maps a memory to what
    full-text search found of the query in it, `similarity` to its cosine similarity."""
    pool = sorted(candidates, key=order_key)
    ranked: list[tuple[Ranked, tuple[datetime, int, str]]] = []
    for position, candidate in enumerate(pool):
        found = text.get(candidate.memory_id, NO_TEXT)
        text_part = text_evidence(found.share)
        semantic_part = semantic_evidence(similarity.get(candidate.memory_id))
        relevance = fuse(text_part, semantic_part)
        if relevance <= 0:
            continue
        recency = (position + 1) / len(pool)
        signals = found.signals + ((SEMANTIC,) if semantic_part > 0 else ())
        score = round(relevance + RECENCY_BONUS * recency, 6)
        cosine = similarity.get(candidate.memory_id)
        entry = Ranked(candidate.memory_id, score, signals, relevance, found.share, cosine)
        ranked.append((entry, order_key(candidate)))
    ranked.sort(key=lambda pair: (pair[0].score, pair[1]), reverse=True)
    return [r for r, _ in ranked]


def nearly_as_relevant(earlier: Ranked, later: Ranked) -> bool:
    """Whether the later memory matches the query nearly as well as the earlier one."""
    if later.relevance >= NEARLY_AS_RELEVANT * earlier.relevance:
        return True
    return (
        earlier.similarity is not None
        and later.similarity is not None
        and earlier.similarity - later.similarity <= NEARLY_AS_SIMILAR
        and later.share >= NEARLY_AS_RELEVANT * earlier.share
    )


def contenders(ranked: Sequence[Ranked], order: dict[str, tuple[datetime, int, str]]) -> list[tuple[str, str]]:
    """The pairs (earlier memory, later memory) in which the later ranks below the earlier
    and is nearly as relevant."""
    window = ranked[:SUPERSEDE_WINDOW]
    return [
        (above.memory_id, below.memory_id)
        for i, above in enumerate(window)
        for below in window[i + 1 :]
        if order[below.memory_id] > order[above.memory_id] and nearly_as_relevant(above, below)
    ]


def rivals(
    pairs: Iterable[tuple[str, str]], ranked: Sequence[Ranked], order: dict[str, tuple[datetime, int, str]]
) -> list[tuple[str, str]]:
    """For the later memory of each pair, every earlier candidate of the window paired with
    it: the pairs whose likeness decides which earlier memory a later one updates."""
    window = [r.memory_id for r in ranked[:SUPERSEDE_WINDOW]]
    laters = dict.fromkeys(later for _, later in pairs)
    return [(earlier, later) for later in laters for earlier in window if order[earlier] < order[later]]


def same_words(earlier: TextShare, later: TextShare) -> bool:
    """Whether two memories hold the query through mostly the same words, or both hold
    none of them (both match by meaning alone)."""
    first, second = dict(earlier.held), dict(later.held)
    if not first and not second:
        return True
    common = sum(min(first[g], second[g]) for g in first.keys() & second.keys())
    smaller = min(sum(first.values()), sum(second.values()))
    return smaller > 0 and common >= SAME_SUBJECT_WORDS * smaller


def _closest_earlier(later: str, alike: dict[tuple[str, str], float]) -> str | None:
    known = [(similarity, earlier) for (earlier, other), similarity in alike.items() if other == later]
    return max(known)[1] if known else None


def superseding(
    pairs: Iterable[tuple[str, str]], shares: dict[str, TextShare], alike: dict[tuple[str, str], float] | None
) -> list[tuple[str, str]]:
    """Of the contending pairs, those about one subject: they hold the query through
    mostly the same words (or both through meaning alone) and, when there are embeddings
    (`alike` not None: the likeness of each later memory to the earlier candidates, as
    `rivals` pairs them), their embeddings are at least SAME_SUBJECT_SIMILARITY alike and
    the earlier is the one the later is most alike to."""
    no_text = TextShare(0.0, ())
    return [
        (earlier, later)
        for earlier, later in pairs
        if same_words(shares.get(earlier, no_text), shares.get(later, no_text))
        and (
            alike is None
            or (
                alike.get((earlier, later), 0.0) >= SAME_SUBJECT_SIMILARITY
                and _closest_earlier(later, alike) == earlier
            )
        )
    ]


def supersede(
    ranked: list[Ranked], pairs: Iterable[tuple[str, str]], order: dict[str, tuple[datetime, int, str]]
) -> list[Ranked]:
    """`ranked` with the later memory of each pair given a score just above the earlier
    one's, the earliest pairs first; in order of (score, `order`) again, the order pages
    follow."""
    result = list(ranked)
    for earlier, later in pairs:
        position = {r.memory_id: i for i, r in enumerate(result)}
        above, below = position[earlier], position[later]
        if below < above:
            continue
        moved = result.pop(below)
        lifted = msgspec.structs.replace(moved, score=round(result[above].score + 1e-6, 6))
        result.insert(above, lifted)
    return sorted(result, key=lambda r: (r.score, order[r.memory_id]), reverse=True)
