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
to them, make the answer.

Its confidence asks whether the answer covers the whole question, not only its subject:
a memory about the same person as the question ("Jordan takes lisinopril" for "What is
Jordan's cholesterol level?") is close to it in meaning through the name alone. So the
meaning of a chosen sentence is measured against the part of the question it does not
already hold word for word (`unheld`): what is left must still be close to the sentence.
A sentence's confidence is its word evidence, in which the question's names weigh less
(`names`: they say whom the question is about more than what it asks), fused with that
meaning (full when it holds every meaningful word); the answer's is that of its surest
sentence, and below `ANSWER_FLOOR` nothing answers and the answer says so. A sentence
that lacks the kind of thing an English question's opening words ask for (`asked_for`: a
number for "how many", a time for "when") has no confidence, however close in meaning;
one that the whole question is no closer to in meaning than the question's words it holds
are (`held_words`) is half as sure: it shares the question's subject, not what it asks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import msgspec
import pysbd
import regex
import snowballstemmer

from memanto_server.memories.search.grammar import RUN_SCRIPT, STOP_WORDS, ngrams, words
from memanto_server.memories.search.ranking import SEMANTIC_CEILING, fuse, semantic_evidence

ANSWER_FLOOR = 0.2
# A sentence is kept while it scores at least this share of the best one.
CLOSE_TO_BEST = 0.5
# Word evidence counts for this much of itself (as text evidence does in recall).
WORD_WEIGHT = 0.9
# For confidence, a name of the question weighs this share of another word as rare: it
# says what the question is about more than what it asks.
NAME_WEIGHT = 0.5
# A sentence that the whole question is no closer to in meaning than the question's own words
# that it holds are (`held_words`) answers the question's subject, not what it asks ("Jordan's
# fiancee runs marathons" for "Which marathon is Jordan registered for?"): this share as sure.
SUBJECT_ONLY_WEIGHT = 0.5
_LINES = regex.compile(r"\n\s*")
_STEMMER = snowballstemmer.stemmer("english")
_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+(?:['\u2019][\p{L}\p{M}\p{N}]+)*")
_RUN = regex.compile(f"[{RUN_SCRIPT}]+")

# What kind of thing an English question asks for, when its opening words say so, and what a
# sentence must hold to give it: a question asking "how many" is not answered by a sentence
# without a number, nor one asking "when" by a sentence without a time, however close their
# subjects are in meaning. The wh-phrase must open the question or one of its clauses ("when"
# inside a clause is a conjunction: "anything to watch for when choosing a hotel?").
QUANTITY, TIME = "quantity", "time"
_ASKS = (
    (QUANTITY, regex.compile(r"(?:^|[;,:]\s*)how\s+(?:many|much|long|often|old|far|fast)\b", regex.IGNORECASE)),
    (TIME, regex.compile(r"(?:^|[;,:]\s*)(?:when|what\s+time|what\s+date|which\s+(?:day|date))\b", regex.IGNORECASE)),
)
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    "seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundreds?|"
    "thousands?|millions?|billions?|dozens?|half|once|twice|single|double|few|several|couple"
)
_TIME_WORDS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|monday|tuesday|wednesday|thursday|friday|"
    "saturday|sunday|weekdays?|weekends?|today|tomorrow|yesterday|tonight|mornings?|afternoons?|"
    "evenings?|nights?|noon|midday|midnight|daily|weekly|monthly|yearly|annually|quarterly|"
    "days?|weeks?|months?|years?|quarters?|spring|summer|autumn|fall|winter|now|soon|later|"
    "before|after|until|since|during|ago|next|last"
)
# A sentence holds a number with a digit (in any script) or a number word; a time, with a
# digit or a word for a date, a day, a part of the day or a season, or a relative one. The
# lists are broad on purpose ("may", "last"): a wrong match only leaves the rule unused,
# while a missing word would silence a sentence that answers.
_HOLDS = {
    QUANTITY: regex.compile(rf"\p{{Nd}}|\b(?:{_NUMBER_WORDS})\b", regex.IGNORECASE),
    TIME: regex.compile(rf"\p{{Nd}}|\b(?:{_TIME_WORDS})\b", regex.IGNORECASE),
}


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
    lexical: float = 0.0  # the share of the question's word weight (names weighing less) it holds


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


def names(question: str) -> set[str]:
    """The stems of the names in a question: its capitalised words after the first word
    ("Jordan", "Karen Liu"; not "CSM", written in capitals). They say whom or what the
    question is about, not what it asks; a question of names alone has none."""
    found = [m.group() for m in _WORD.finditer(question)][1:]
    named = {_STEMMER.stemWord(w.lower()) for w in found if w[0].isupper() and not w.isupper()}
    meaningful = {_STEMMER.stemWord(w) for w in words(question) if w not in STOP_WORDS}
    return named if meaningful - named else set()


def lexical_scores(question: str, sentences: Sequence[Sentence], named: set[str] | None = None) -> list[float]:
    """The share of the question's weight each sentence holds (rarer stems weigh more; the
    stems of `named`, the question's names, NAME_WEIGHT of that)."""
    asked = stems(question)
    held = [stems(s.text) & asked for s in sentences]
    total = len(sentences)
    weight = {t: math.log(1 + total / max(1, sum(1 for h in held if t in h))) for t in asked}
    for name in (named or set()) & asked:
        weight[name] *= NAME_WEIGHT
    full = sum(weight.values())
    return [sum(weight[t] for t in h) / full if full else 0.0 for h in held]


def choose_sentences(
    question: str,
    sources: Sequence[Source],
    sentences: Sequence[Sentence],
    similarities: Sequence[float] | None,
    max_sentences: int = 3,
) -> list[Extract]:
    """The sentences that answer `question` best, best first. `similarities` are the
    sentences' cosine similarities to the question (None without an embedder)."""
    if not sentences or not sources:
        return []
    lexical = lexical_scores(question, sentences)
    # What a sentence holds of what the question asks, its names weighing less: for confidence.
    asked = lexical_scores(question, sentences, names(question))
    by_id = {s.memory_id: s for s in sources}
    best_source = max(s.score for s in sources) or 1.0
    scored: list[Extract] = []
    for index, sentence in enumerate(sentences):
        meaning = semantic_evidence(similarities[index]) if similarities is not None else 0.0
        evidence = fuse(WORD_WEIGHT * lexical[index], meaning)
        standing = 0.5 + 0.5 * by_id[sentence.memory_id].score / best_source
        if evidence > 0:
            scored.append(Extract(sentence.text, sentence.memory_id, evidence * standing, asked[index]))
    scored.sort(key=lambda e: e.score, reverse=True)
    chosen: list[Extract] = []
    for extract in scored:
        if extract.score < scored[0].score * CLOSE_TO_BEST or len(chosen) == max_sentences:
            break
        if extract.sentence not in {c.sentence for c in chosen}:
            chosen.append(extract)
    return chosen


def asked_for(question: str) -> str | None:
    """The kind of thing `question` asks for (QUANTITY, TIME), when its wording says so."""
    return next((kind for kind, asks in _ASKS if asks.search(question.strip())), None)


def gives(kind: str | None, sentence: str) -> bool:
    """Whether `sentence` holds something of the kind a question asks for (any sentence
    does when the question's kind is not known)."""
    return kind is None or _HOLDS[kind].search(sentence) is not None


def unheld(question: str, sentence: str) -> str | None:
    """The question without the meaningful words (in scripts without spaces, the
    characters of the character pairs) that `sentence` holds; None when it holds every
    meaningful word of a question that has some."""
    held = stems(sentence)
    kept: list[str] = []
    meaningful = left = 0
    position = 0
    for match in _WORD.finditer(question):
        kept.append(question[position : match.start()])
        position = match.end()
        word = match.group()
        if _RUN.search(word):
            grams = [word[i : i + 2] for i in range(len(word) - 1)] or [word]
            covered = [False] * len(word)
            for i, gram in enumerate(grams):
                if gram in held:
                    covered[i : i + len(gram)] = [True] * len(gram)
            rest = "".join(c for c, done in zip(word, covered, strict=True) if not done)
            meaningful += 1
            left += bool(rest)
            kept.append(rest)
        elif word.lower() in STOP_WORDS:
            kept.append(word)
        else:
            meaningful += 1
            if _STEMMER.stemWord(word.lower()) in held:
                continue
            left += 1
            kept.append(word)
    kept.append(question[position:])
    if meaningful and not left:
        return None
    return "".join(kept)


def held_words(question: str, sentence: str) -> str | None:
    """The meaningful words of `question` that `sentence` holds, in the question's order;
    None when it holds none (or the question is in a script without spaces)."""
    held = stems(sentence)
    found = [
        w
        for w in (m.group() for m in _WORD.finditer(question))
        if not _RUN.search(w) and w.lower() not in STOP_WORDS and _STEMMER.stemWord(w.lower()) in held
    ]
    return " ".join(found) or None


def confidence(
    lexical: float,
    unheld_similarity: float | None,
    all_held: bool,
    gives_asked: bool = True,
    added: float | None = None,
) -> float:
    """How surely a sentence answers the question: its word evidence fused with the
    meaning of what it does not hold word for word (none known without an embedder); none
    at all when it lacks the kind of thing the question asks for (`asked_for`, `gives`).
    `added`: how much closer in meaning the whole question is to the sentence than the
    question's words it holds are (cosine less cosine; None when unknown or none held)."""
    if not gives_asked:
        return 0.0
    meaning = SEMANTIC_CEILING if all_held else semantic_evidence(unheld_similarity)
    sure = fuse(WORD_WEIGHT * lexical, meaning)
    if added is not None and added <= 0:
        sure *= SUBJECT_ONLY_WEIGHT
    return round(sure, 4)


def judge(extracts: Sequence[Extract], confidences: Sequence[float]) -> Answer:
    """The answer made of `extracts`, or none when even the surest is below ANSWER_FLOOR."""
    if not extracts:
        return Answer([], 0.0)
    surest = max(confidences)
    if surest < ANSWER_FLOOR:
        return Answer([], surest)
    return Answer(list(extracts), surest)


def extract_answer(
    question: str,
    sources: Sequence[Source],
    sentences: Sequence[Sentence],
    similarities: Sequence[float] | None,
    unheld_similarities: Sequence[float | None] | None = None,
    max_sentences: int = 3,
    held_similarities: Sequence[float | None] | None = None,
) -> Answer:
    """The answer to `question` from `sentences`: `choose_sentences`, then `judge` with
    each chosen sentence's `confidence`. `unheld_similarities` are, for each chosen
    sentence, the cosine similarity of `unheld(question, sentence)` to it (None for one
    that holds every word, or without an embedder); `held_similarities`, the cosine
    similarity of `held_words(question, sentence)` to it (None for one that holds none)."""
    chosen = choose_sentences(question, sources, sentences, similarities, max_sentences)
    known = unheld_similarities if unheld_similarities is not None else [None] * len(chosen)
    held = held_similarities if held_similarities is not None else [None] * len(chosen)
    whole = {s.text: similarity for s, similarity in zip(sentences, similarities or [], strict=False)}
    kind = asked_for(question)
    confidences = [
        confidence(
            e.lexical,
            similarity,
            unheld(question, e.sentence) is None,
            gives(kind, e.sentence),
            added_meaning(whole.get(e.sentence), part),
        )
        for e, similarity, part in zip(chosen, known, held, strict=True)
    ]
    return judge(chosen, confidences)


def added_meaning(whole: float | None, held: float | None) -> float | None:
    """How much closer the whole question is to a sentence than its held words are."""
    return None if whole is None or held is None else whole - held
