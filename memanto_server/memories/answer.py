"""Extractive answers: the sentences of the recalled memories that answer a question.

Sentences are split by pysbd, which knows abbreviations ("Dr.", "e.g.", "U.S."),
decimals and the full stops of other scripts. A sentence scores by two kinds of
evidence, combined as in recall (`ranking.fuse`):
- its words: the share of the question's meaningful words it holds, each weighed by how
  rare it is among the candidate sentences, compared stem to stem with the Snowball
  English stemmer (the stemmer of Postgres's `english` configuration, which recall
  searches with, so a memory saying "named" answers a question asking for the "name");
  in scripts without spaces, the question's character pairs it holds;
- its meaning: cosine similarity of its embedding to the question's, when an embedder is on.
A sentence of a better-ranked memory counts for more. The best sentences, and those close
to them, make the answer. Its confidence is the recall score of the memory that gave the
best sentence: below `ANSWER_FLOOR` nothing answers and the answer says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import msgspec
import pysbd
import regex
import snowballstemmer

from memanto_server.memories.search.grammar import STOP_WORDS, ngrams, words
from memanto_server.memories.search.ranking import fuse, semantic_evidence

ANSWER_FLOOR = 0.2
# A sentence is kept while it scores at least this share of the best one.
CLOSE_TO_BEST = 0.5
_LINES = regex.compile(r"\n\s*")
_STEMMER = snowballstemmer.stemmer("english")


class Source(msgspec.Struct, frozen=True):
    """A recalled memory, as answer extraction sees it."""

    memory_id: str
    title: str | None
    content: str
    score: float


class Sentence(msgspec.Struct, frozen=True):
    text: str
    memory_id: str
    rank: int  # of its memory among the sources


class Extract(msgspec.Struct, frozen=True):
    sentence: str
    memory_id: str
    score: float


class Answer(msgspec.Struct, frozen=True):
    extracts: list[Extract]
    confidence: float


@lru_cache(maxsize=1)
def _segmenter() -> pysbd.Segmenter:
    return pysbd.Segmenter(language="en", clean=False)


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`: lines apart, and within a line as pysbd finds them."""
    found: list[str] = []
    for line in _LINES.split(text):
        if line.strip():
            found.extend(s.strip() for s in _segmenter().segment(line) if s.strip())
    return found


def sentences_of(sources: Sequence[Source]) -> list[Sentence]:
    found: list[Sentence] = []
    for rank, source in enumerate(sources):
        if source.title and source.title.strip():
            found.append(Sentence(source.title.strip(), source.memory_id, rank))
        found.extend(Sentence(text, source.memory_id, rank) for text in split_sentences(source.content))
    return found


def stems(text: str) -> set[str]:
    """The stems of a text's meaningful words, and its character pairs."""
    return {_STEMMER.stemWord(w) for w in words(text) if w not in STOP_WORDS} | set(ngrams(text))


def lexical_scores(question: str, sentences: Sequence[Sentence]) -> list[float]:
    """The share of the question's weight each sentence holds (rarer stems weigh more)."""
    asked = stems(question)
    held = [stems(s.text) & asked for s in sentences]
    total = len(sentences)
    weight = {t: math.log(1 + total / max(1, sum(1 for h in held if t in h))) for t in asked}
    full = sum(weight.values())
    return [sum(weight[t] for t in h) / full if full else 0.0 for h in held]


def extract_answer(
    question: str,
    sources: Sequence[Source],
    sentences: Sequence[Sentence],
    similarities: Sequence[float] | None,
    max_sentences: int = 3,
) -> Answer:
    """The sentences that answer `question` best, or none when no source is a real match.

    `similarities` are the sentences' cosine similarities to the question (None without
    an embedder)."""
    if not sentences or not sources:
        return Answer([], 0.0)
    lexical = lexical_scores(question, sentences)
    by_id = {s.memory_id: s for s in sources}
    best_source = max(s.score for s in sources) or 1.0
    scored: list[Extract] = []
    for index, sentence in enumerate(sentences):
        meaning = semantic_evidence(similarities[index]) if similarities is not None else 0.0
        evidence = fuse(0.9 * lexical[index], meaning)
        standing = 0.5 + 0.5 * by_id[sentence.memory_id].score / best_source
        if evidence > 0:
            scored.append(Extract(sentence.text, sentence.memory_id, evidence * standing))
    if not scored:
        return Answer([], 0.0)
    scored.sort(key=lambda e: e.score, reverse=True)
    confidence = round(by_id[scored[0].memory_id].score, 4)
    if confidence < ANSWER_FLOOR:
        return Answer([], confidence)
    chosen: list[Extract] = []
    for extract in scored:
        if extract.score < scored[0].score * CLOSE_TO_BEST or len(chosen) == max_sentences:
            break
        if extract.sentence not in {c.sentence for c in chosen}:
            chosen.append(extract)
    return Answer(chosen, confidence)
