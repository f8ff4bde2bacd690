"""Answer extraction: sentences, one stemmer, sentences chosen by words and by meaning, abstention."""

from __future__ import annotations

from memanto_server.memories.answer import (
    ANSWER_FLOOR,
    Source,
    extract_answer,
    lexical_scores,
    sentences_of,
    split_sentences,
    stems,
)


def test_sentences_are_not_cut_at_abbreviations() -> None:
    text = "Dr. Okafor saw the U.S. team at 3 p.m. today. They want e.g. apples. Next visit in May!"
    assert split_sentences(text) == [
        "Dr. Okafor saw the U.S. team at 3 p.m. today.",
        "They want e.g. apples.",
        "Next visit in May!",
    ]


def test_lines_and_full_stops_of_other_scripts_end_sentences() -> None:
    assert split_sentences("First line\nsecond line") == ["First line", "second line"]
    assert split_sentences("会议改到周四。客户喜欢邮件。") == ["会议改到周四。", "客户喜欢邮件。"]


def test_one_stemmer_a_name_matches_named() -> None:
    assert stems("What is the cat's name?") & stems("The cat is named Biscuit.") == {"name"} | (
        stems("cat") & stems("cat")
    )
    assert "contact" in stems("contacted") & stems("contacts")


def source(memory_id: str, content: str, score: float = 0.6, title: str | None = None) -> Source:
    return Source(memory_id, title, content, score)


def test_the_sentence_with_the_rare_words_answers() -> None:
    sources = [source("a", "Billing date is the 15th of every month. The customer prefers email. Opened in 2019.")]
    said = extract_answer("What is the billing date?", sources, sentences_of(sources), None)
    assert [e.sentence for e in said.extracts] == ["Billing date is the 15th of every month."]
    assert said.confidence == 0.6


def test_meaning_picks_a_sentence_that_shares_no_word() -> None:
    sources = [source("a", "Invoices go out on the 1st. Customer prefers email over phone calls.")]
    sentences = sentences_of(sources)
    question = "How does the client want to be reached?"
    assert lexical_scores(question, sentences) == [0.0, 0.0]
    said = extract_answer(question, sources, sentences, [0.2, 0.62])
    assert [e.sentence for e in said.extracts] == ["Customer prefers email over phone calls."]


def test_a_weak_best_source_means_no_answer() -> None:
    sources = [source("a", "Billing date is the 15th.", score=ANSWER_FLOOR - 0.01)]
    said = extract_answer("What is the billing date?", sources, sentences_of(sources), None)
    assert said.extracts == []
    assert said.confidence < ANSWER_FLOOR


def test_nothing_to_say_without_sources() -> None:
    assert extract_answer("anything?", [], [], None).extracts == []


def test_a_title_is_a_sentence_of_its_memory() -> None:
    sources = [source("a", "Stored under Northwind/DPA-2026.pdf.", title="Signed DPA")]
    assert [s.text for s in sentences_of(sources)] == ["Signed DPA", "Stored under Northwind/DPA-2026.pdf."]
