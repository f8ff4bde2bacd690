"""Scoring a recall and answer run against the data set (pure: no server, no database)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec
import snowballstemmer

from memanto_server.memories.search.grammar import STOP_WORDS, ngrams, words

DATA = Path(__file__).resolve().parent / "data"
_STEMMER = snowballstemmer.stemmer("english")


class Memory(msgspec.Struct, frozen=True):
    id: str
    content: str
    type: str = "fact"
    title: str | None = None


class Question(msgspec.Struct, frozen=True):
    q: str
    gold: list[str]
    answer: list[str] = []
    stale: str | None = None
    typo: bool = False
    # Written after the answer's constants were chosen, and never looked at while choosing
    # them: its figures are reported apart, as a test of how those choices carry over.
    heldout: bool = False


class Agent(msgspec.Struct, frozen=True):
    agent_id: str
    domain: str
    memories: list[Memory]
    questions: list[Question]


def load(directory: Path = DATA) -> list[Agent]:
    return [msgspec.json.decode(path.read_bytes(), type=Agent) for path in sorted(directory.glob("*.json"))]


def content_stems(text: str) -> set[str]:
    """Meaningful words (stemmed as Postgres's english configuration does) and character pairs."""
    return {_STEMMER.stemWord(w) for w in words(text) if w not in STOP_WORDS} | set(ngrams(text))


def shares_no_word(question: Question, memories: dict[str, Memory]) -> bool:
    """Whether the question shares no meaningful word with any memory that answers it."""
    asked = content_stems(question.q)
    return all(not (asked & content_stems(f"{memories[g].title or ''} {memories[g].content}")) for g in question.gold)


def non_latin(text: str) -> bool:
    return any(ord(c) >= 0x370 and c.isalpha() for c in text)


class Outcome(msgspec.Struct, frozen=True):
    """What the service did with one question in one mode."""

    ranked: list[str]  # memory keys, best first
    answer: str | None = None
    confidence: float | None = None
    abstained: bool | None = None


def reciprocal_rank(ranked: Sequence[str], gold: Iterable[str]) -> float:
    golden = set(gold)
    return next((1 / (i + 1) for i, key in enumerate(ranked) if key in golden), 0.0)


def found_in(ranked: Sequence[str], gold: Iterable[str], k: int) -> bool:
    return bool(set(ranked[:k]) & set(gold))


def later_first(ranked: Sequence[str], gold: Sequence[str], stale: str) -> bool:
    """The updated fact ranks above the fact it replaced (and is found at all)."""
    positions = {key: i for i, key in reversed(list(enumerate(ranked)))}
    best_gold = min((positions[g] for g in gold if g in positions), default=None)
    return best_gold is not None and best_gold < positions.get(stale, len(ranked) + 1)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(
    agents: Sequence[Agent], outcomes: dict[tuple[str, int], Outcome], *, heldout: bool = False
) -> dict[str, object]:
    """Recall@5, MRR, and the figures of each kind of question, over every agent: of the
    questions the constants were tuned on, or with `heldout` of the held-out ones."""
    at5: dict[str, list[float]] = {k: [] for k in ("all", "no_shared_word", "shared_word", "non_latin", "typo")}
    mrr: list[float] = []
    updates: list[float] = []
    answered: list[float] = []
    abstained: list[float] = []
    wrongly_abstained: list[float] = []
    for agent in agents:
        memories = {m.id: m for m in agent.memories}
        for index, question in enumerate(agent.questions):
            outcome = outcomes.get((agent.agent_id, index))
            if outcome is None or question.heldout != heldout:
                continue
            if not question.gold:
                if outcome.abstained is not None:
                    abstained.append(float(outcome.abstained))
                continue
            hit = float(found_in(outcome.ranked, question.gold, 5))
            at5["all"].append(hit)
            at5["no_shared_word" if shares_no_word(question, memories) else "shared_word"].append(hit)
            if non_latin(question.q):
                at5["non_latin"].append(hit)
            if question.typo:
                at5["typo"].append(hit)
            mrr.append(reciprocal_rank(outcome.ranked, question.gold))
            if question.stale:
                updates.append(float(later_first(outcome.ranked, question.gold, question.stale)))
            if outcome.answer is not None:
                text = outcome.answer.lower()
                answered.append(float(any(fact.lower() in text for fact in question.answer)))
                wrongly_abstained.append(float(bool(outcome.abstained)))
    return {
        **{f"recall_at_5_{k}": mean(v) for k, v in at5.items()},
        **{f"questions_{k}": len(v) for k, v in at5.items()},
        "mrr": mean(mrr),
        "later_fact_first": mean(updates),
        "knowledge_updates": len(updates),
        "answer_contains_fact": mean(answered),
        "answer_abstains_without_answer": mean(abstained),
        "questions_without_answer": len(abstained),
        "answer_abstains_wrongly": mean(wrongly_abstained),
    }


def rrf(lists: Sequence[Sequence[str]], k: int = 60) -> list[str]:
    """Reciprocal rank fusion of ranked lists (for comparison with the service's fusion)."""
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, key in enumerate(ranked):
            scores[key] = scores.get(key, 0.0) + 1 / (k + rank + 1)
    return sorted(scores, key=lambda key: -scores[key])


def dump(results: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
