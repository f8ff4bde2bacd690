"""What a recall query asks for: its words, phrases and excluded words, as search terms.

The grammar is what people type into a search box: words, `"a phrase"`, `-word` to
leave out memories that hold it; `or` and `and` are ordinary words. Every word counts at
once; ranking (`ranking.py`) weighs them.

A term is searched one of two ways:
- `word` / `phrase`: Postgres full-text search with the English configuration (stemmed;
  words of other scripts written with spaces, such as Russian, Arabic or Hindi, are kept
  whole and lower-cased by it);
- `gram`: for scripts written without spaces between words (Chinese, Japanese, Thai, …,
  and Korean, whose words carry their particles), the overlapping character pairs of a
  run (a lone character by itself), which `text_ngrams()` (migration 0008) makes of a
  memory the same way.

Word splitting counts combining marks (`\\p{M}`) as part of a word, so a Hindi or Thai
word is not cut at its vowel signs.
"""

from __future__ import annotations

import msgspec
import regex

# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer, Hiragana,
# Katakana, CJK ideographs (and extension A, compatibility), Hangul syllables. The same
# ranges as `text_ngrams()` in migration 0008: a query must be cut as memories are.
RUN_SCRIPT = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_RUN = regex.compile(f"[{RUN_SCRIPT}]+")
_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+(?:['\u2019][\p{L}\p{M}\p{N}]+)*")
_TOKEN = regex.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')

# Words that carry no meaning of their own in a question. Postgres drops its own list
# for full-text search; this one decides which words are worth a typo correction and
# which words of a question answer extraction weighs.
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

WORD, PHRASE, GRAM, TYPO = "word", "phrase", "gram", "typo"

# Longest query this many words: the rest are ignored (a query is up to 1,000 characters).
MOST_WORDS = 24


class Term(msgspec.Struct, frozen=True):
    """One thing to look for. `group` is the query word it stands for: a word and its
    typo corrections are one group, and a memory scores the best term of each group."""

    text: str
    kind: str
    group: int
    weight: float = 1.0


class Query(msgspec.Struct, frozen=True):
    terms: tuple[Term, ...]
    excluded: tuple[str, ...]  # words whose memories are left out
    typo_words: tuple[tuple[int, str], ...]  # (group, word): words worth a typo correction if unknown


def words(text: str) -> list[str]:
    """The words of `text`, lower-cased, combining marks kept inside their word."""
    return [w.lower() for w in _WORD.findall(text)]


def ngrams(text: str) -> list[str]:
    """The character pairs of each run of a script without spaces (a lone character alone),
    in order of first appearance: what `text_ngrams()` stores of a memory."""
    grams: list[str] = []
    for run in _RUN.findall(text):
        if len(run) == 1:
            grams.append(run)
        grams.extend(run[i : i + 2] for i in range(len(run) - 1))
    return list(dict.fromkeys(grams))


def _split(token: str) -> tuple[list[str], list[str]]:
    """A token's words (outside runs of spaceless scripts) and its grams."""
    grams = ngrams(token)
    rest = _RUN.sub(" ", token) if grams else token
    return words(rest), grams


class _Builder:
    def __init__(self) -> None:
        self.terms: list[Term] = []
        self.excluded: list[str] = []
        self.typo_words: list[tuple[int, str]] = []
        self.groups = 0

    def add(self, text: str, kind: str) -> int | None:
        if any(t.text == text and t.kind == kind for t in self.terms) or self.groups >= MOST_WORDS:
            return None
        self.terms.append(Term(text, kind, self.groups))
        self.groups += 1
        return self.groups - 1

    def phrase(self, text: str, negated: bool) -> None:
        phrase_words, grams = _split(text)
        if negated:
            self.excluded.extend(phrase_words)
            return
        if len(phrase_words) > 1:
            self.add(" ".join(phrase_words), PHRASE)
        elif phrase_words:
            self.add(phrase_words[0], WORD)
        for gram in grams:
            self.add(gram, GRAM)

    def token(self, text: str, negated: bool) -> None:
        token_words, grams = _split(text)
        if negated and token_words:
            self.excluded.extend(token_words)
            return
        for word in token_words:
            if word in STOP_WORDS:
                continue
            group = self.add(word, WORD)
            if group is not None and len(word) >= 3 and word not in STOP_WORDS and not word.isdigit():
                self.typo_words.append((group, word))
        for gram in grams:
            self.add(gram, GRAM)


def parse(text: str) -> Query:
    built = _Builder()
    for negated_phrase, phrase, negated, token in _TOKEN.findall(text):
        if phrase or (negated_phrase and not token):
            built.phrase(phrase, bool(negated_phrase))
        else:
            built.token(token, bool(negated))
    return Query(tuple(built.terms), tuple(dict.fromkeys(built.excluded)), tuple(built.typo_words))


def with_corrections(query: Query, corrections: dict[str, list[str]], weight: float) -> Query:
    """`query` with each unknown word's close spellings added to its group, at `weight`."""
    extra = [
        Term(alternative, TYPO, group, weight)
        for group, word in query.typo_words
        for alternative in corrections.get(word, [])
        if alternative != word
    ]
    return msgspec.structs.replace(query, terms=query.terms + tuple(extra))
