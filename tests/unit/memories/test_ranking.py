"""Recall's ranking: IDF weighting, fusion on a fixed scale, recency and supersession, order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memanto_server.memories.search.grammar import GRAM, TYPO, WORD, Term
from memanto_server.memories.search.ranking import (
    SEMANTIC_FLOOR,
    STRONG,
    WEAK,
    Candidate,
    Corpus,
    Ranked,
    TextScorer,
    TextShare,
    contenders,
    fuse,
    inverse_frequency,
    nearly_as_relevant,
    order_key,
    rank,
    rivals,
    same_words,
    semantic_evidence,
    supersede,
    superseding,
    term_weight,
    text_evidence,
)

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def scorer(terms: list[Term], frequencies: list[int], population: int = 100) -> TextScorer:
    return TextScorer(terms, Corpus(tuple(frequencies), tuple(True for _ in terms), population))


def test_a_rare_word_outweighs_a_common_one() -> None:
    terms = [Term("customer", WORD, 0), Term("invoice", WORD, 1)]
    weigh = scorer(terms, [90, 2])
    common_only = weigh.share([0.4, 0.0]).share
    rare_only = weigh.share([0.0, 0.4]).share
    assert rare_only > 3 * common_only
    assert weigh.share([0.4, 0.4]).share == pytest.approx(0.7)  # both, once each in the content


def test_title_and_repeats_count_more_with_diminishing_returns() -> None:
    assert term_weight(0.4, WORD) < term_weight(0.8, WORD) < term_weight(1.0, WORD) < term_weight(2.0, WORD) < 1.4
    assert term_weight(1.0, WORD) == pytest.approx(1.0)
    assert term_weight(0.0, WORD) == 0.0
    assert term_weight(1.0, GRAM) == term_weight(2.0, GRAM)


def test_a_typo_correction_counts_for_its_word_at_a_lower_weight_and_says_so() -> None:
    terms = [Term("emial", WORD, 0), Term("email", TYPO, 0, 0.7), Term("billing", WORD, 1)]
    weigh = scorer(terms, [0, 5, 5])
    exact = scorer([Term("email", WORD, 0), Term("billing", WORD, 1)], [5, 5]).share([0.4, 0.4])
    corrected = weigh.share([0.0, 0.4, 0.4])
    assert corrected.signals == ("text", "typo")
    assert corrected.share == pytest.approx(exact.share * (1 + 0.7) / 2)
    assert weigh.share([0.0, 0.4, 0.0]).signals == ("typo",)


def test_stop_words_and_pairs_that_nothing_holds_do_not_dilute_the_query() -> None:
    terms = [Term("東京", GRAM, 0), Term("京に", GRAM, 1), Term("the", WORD, 2)]
    corpus = Corpus((3, 0, 0), (True, True, False), 50)
    assert TextScorer(terms, corpus).share([1.0, 0.0, 0.0]).share == pytest.approx(term_weight(1.0, GRAM))
    # A word that nothing holds does dilute: the query asks for something absent.
    words_only = [Term("tokyo", WORD, 0), Term("zeppelin", WORD, 1)]
    assert scorer(words_only, [3, 0], 50).share([0.4, 0.0]).share < 0.5


def test_inverse_frequency_is_positive_and_falls_with_frequency() -> None:
    values = [inverse_frequency(f, 1000) for f in (1, 10, 100, 999, 1000)]
    assert values == sorted(values, reverse=True)
    assert values[-1] > 0
    assert inverse_frequency(20, 10) > 0  # counts capped differently never go negative


def test_evidence_scale() -> None:
    assert semantic_evidence(None) == semantic_evidence(SEMANTIC_FLOOR) == semantic_evidence(-0.3) == 0.0
    assert 0 < semantic_evidence(0.5) < semantic_evidence(0.7) <= semantic_evidence(0.99) <= 1
    assert text_evidence(0.0) == 0.0
    assert text_evidence(1.0) >= STRONG
    assert fuse(0.0, 0.0) == 0.0
    assert fuse(0.5, 0.0) == 0.5
    assert fuse(0.5, 0.5) == pytest.approx(0.75)
    assert WEAK < STRONG


def candidate(memory_id: str, minutes: int, seq: int | None = None) -> Candidate:
    return Candidate(memory_id, T0 + timedelta(minutes=minutes), seq)


def test_every_signal_counts_at_once() -> None:
    candidates = [candidate("both", 0), candidate("text", 1), candidate("meaning", 2), candidate("nothing", 3)]
    shares = {"both": TextShare(0.8, ("text",)), "text": TextShare(0.8, ("text",))}
    similarity = {"both": 0.7, "meaning": 0.7, "nothing": 0.1}
    ranked = rank(candidates, shares, similarity)
    assert [r.memory_id for r in ranked][:1] == ["both"]
    assert {r.memory_id for r in ranked} == {"both", "text", "meaning"}
    assert [r.signals for r in ranked if r.memory_id == "both"] == [("text", "semantic")]


def test_equal_matches_rank_newest_first_and_a_batch_keeps_its_order() -> None:
    # One batch: one creation time, insertion order in seq.
    candidates = [candidate(f"m{i}", 0, seq=10 + i) for i in range(4)] + [candidate("old", -5, None)]
    shares = {c.memory_id: TextShare(0.5, ("text",)) for c in candidates}
    ranked = rank(candidates, shares, {})
    assert [r.memory_id for r in ranked] == ["m3", "m2", "m1", "m0", "old"]
    assert order_key(candidate("x", 0, None)) < order_key(candidate("x", 0, 1))


def test_a_later_memory_on_the_same_subject_supersedes() -> None:
    older, newer, other = candidate("plan_old", 0, 1), candidate("plan_new", 5, 2), candidate("other", 3, 3)
    shares = {
        "plan_old": TextShare(0.9, ("text",), ((0, 0.6), (1, 0.3))),
        "plan_new": TextShare(0.75, ("text",), ((0, 0.6), (1, 0.15))),
        "other": TextShare(0.8, ("text",), ((1, 0.3), (2, 0.5))),
    }
    ranked = rank([older, newer, other], shares, {})
    assert [r.memory_id for r in ranked] == ["plan_old", "other", "plan_new"]
    order = {c.memory_id: order_key(c) for c in (older, newer, other)}
    pairs = contenders(ranked, order)
    assert pairs == [("plan_old", "other"), ("plan_old", "plan_new"), ("other", "plan_new")]
    assert same_words(shares["plan_old"], shares["plan_new"])
    assert not same_words(shares["other"], shares["plan_new"])
    # Without embeddings the words decide; with them, the memories must also be alike in meaning.
    assert superseding(pairs, shares, None) == [("plan_old", "plan_new")]
    assert rivals([("plan_old", "plan_new")], ranked, order) == [("plan_old", "plan_new"), ("other", "plan_new")]
    alike = {("plan_old", "other"): 0.9, ("other", "plan_new"): 0.4}
    assert superseding(pairs, shares, {**alike, ("plan_old", "plan_new"): 0.3}) == []
    chosen = superseding(pairs, shares, {**alike, ("plan_old", "plan_new"): 0.7})
    assert chosen == [("plan_old", "plan_new")]
    moved = supersede(ranked, chosen, order)
    assert [r.memory_id for r in moved] == ["plan_new", "plan_old", "other"]
    assert [r.score for r in moved] == sorted((r.score for r in moved), reverse=True)


def test_only_a_nearly_as_relevant_later_memory_contends() -> None:
    # A title match stays above a later passing mention of the same word.
    shares = {"title": TextShare(1.0, ("text",), ((0, 1.0),)), "passing": TextShare(0.7, ("text",), ((0, 0.7),))}
    candidates = [candidate("title", 0, 1), candidate("passing", 1, 2)]
    ranked = rank(candidates, shares, {})
    assert contenders(ranked, {c.memory_id: order_key(c) for c in candidates}) == []


def test_a_much_weaker_later_memory_supersedes_nothing() -> None:
    ranked = [Ranked("strong", 0.9, ("text",), 0.9), Ranked("weak", 0.2, ("text",), 0.2)]
    order = {"strong": order_key(candidate("strong", 0)), "weak": order_key(candidate("weak", 1))}
    assert contenders(ranked, order) == []


def test_a_lifted_memory_keeps_the_list_in_the_order_pages_follow() -> None:
    # "tie" and "earlier" score the same; lifting "later" above "earlier" puts it above "tie" too.
    candidates = [candidate("tie", 2, 3), candidate("earlier", 1, 1), candidate("later", 5, 9)]
    order = {c.memory_id: order_key(c) for c in candidates}
    ranked = [
        Ranked("tie", 0.5, ("text",), 0.5),
        Ranked("earlier", 0.5, ("text",), 0.5),
        Ranked("later", 0.45, (), 0.45),
    ]
    moved = supersede(ranked, [("earlier", "later")], order)
    keys = [(r.score, order[r.memory_id]) for r in moved]
    assert keys == sorted(keys, reverse=True)
    assert [r.memory_id for r in moved] == ["later", "tie", "earlier"]


def test_an_update_replaces_the_earlier_memory_it_resembles_most() -> None:
    # "Mr Wang prefers WeChat" and "the meeting with Mr Wang moved to the 12th" share the
    # name the query asks about; the moved meeting updates the first meeting, not the contact.
    shares = {
        "contact": TextShare(0.8, ("text",), ((0, 0.2), (1, 0.6))),
        "meeting_old": TextShare(0.2, ("text",), ((0, 0.2),)),
        "meeting_new": TextShare(0.2, ("text",), ((0, 0.2),)),
    }
    pairs = [("contact", "meeting_new"), ("meeting_old", "meeting_new")]
    assert superseding(pairs, shares, None) == pairs  # the name alone: same words
    alike = {("contact", "meeting_new"): 0.73, ("meeting_old", "meeting_new"): 0.88}
    assert superseding(pairs, shares, alike) == [("meeting_old", "meeting_new")]


def test_memories_matched_by_meaning_alone_can_supersede() -> None:
    shares = {"car_old": TextShare(0.0, ()), "car_new": TextShare(0.0, ())}
    assert same_words(shares["car_old"], shares["car_new"])
    assert superseding([("car_old", "car_new")], {}, {("car_old", "car_new"): 0.67}) == [("car_old", "car_new")]
    assert superseding([("car_old", "car_new")], {}, {("car_old", "car_new"): 0.3}) == []
    # One holding words of the query and one holding none are not on one subject by words.
    assert not same_words(TextShare(0.3, ("text",), ((0, 0.3),)), shares["car_new"])


def test_nearly_as_relevant_in_meaning_is_measured_in_cosine() -> None:
    earlier = Ranked("old", 0.32, ("semantic",), 0.32, 0.0, 0.31)
    close = Ranked("new", 0.17, ("semantic",), 0.17, 0.0, 0.24)  # relevance halves, cosine 0.07 lower
    far = Ranked("far", 0.1, ("semantic",), 0.1, 0.0, 0.19)
    assert nearly_as_relevant(earlier, close)
    assert not nearly_as_relevant(earlier, far)
    # Closer in meaning but holding far fewer of the query's words is not nearly as relevant.
    worded = Ranked("worded", 0.5, ("text", "semantic"), 0.5, 0.6, 0.31)
    assert not nearly_as_relevant(worded, Ranked("bare", 0.3, ("semantic",), 0.3, 0.1, 0.3))
    # Without embeddings only relevance counts.
    assert not nearly_as_relevant(Ranked("a", 0.5, ("text",), 0.5, 0.5), Ranked("b", 0.3, ("text",), 0.3, 0.3))
