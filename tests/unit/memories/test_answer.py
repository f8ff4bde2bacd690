"""Answer extraction: sentences, one stemmer, sentences chosen by words and by meaning, abstention."""

from __future__ import annotations

from memanto_server.memories.answer import (
    ANSWER_FLOOR,
    QUANTITY,
    TIME,
    Source,
    asked_for,
    confidence,
    extract_answer,
    gives,
    held_words,
    lexical_scores,
    names,
    sentences_of,
    split_sentences,
    stems,
    unheld,
)
from memanto_server.memories.search.ranking import STRONG


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
    # It holds every meaningful word of the question: as sure as an answer gets.
    assert said.confidence >= STRONG


def test_meaning_picks_a_sentence_that_shares_no_word() -> None:
    sources = [source("a", "Invoices go out on the 1st. Customer prefers email over phone calls.")]
    sentences = sentences_of(sources)
    question = "How does the client want to be reached?"
    assert lexical_scores(question, sentences) == [0.0, 0.0]
    said = extract_answer(question, sources, sentences, [0.2, 0.62], [0.62])
    assert [e.sentence for e in said.extracts] == ["Customer prefers email over phone calls."]
    assert said.confidence >= ANSWER_FLOOR


def test_a_sentence_that_shares_only_the_subject_does_not_answer() -> None:
    # Close in meaning through the name alone: what the question asks (a cholesterol level)
    # is far from the sentence once the name it holds is left out.
    sources = [source("a", "Jordan takes 10 mg of lisinopril each morning.", score=0.9)]
    question = "What is Jordan's cholesterol level?"
    sentences = sentences_of(sources)
    said = extract_answer(question, sources, sentences, [0.42], [0.11])
    assert said.extracts == []
    assert said.confidence < ANSWER_FLOOR
    # The same sentence answers when what is left of the question is close to it.
    assert extract_answer("Which pills does Jordan take?", sources, sentences, [0.5], [0.45]).extracts


def test_what_a_sentence_leaves_unheld_of_a_question() -> None:
    assert unheld("What is Jordan's cholesterol level?", "Jordan takes lisinopril.") == "What is  cholesterol level?"
    assert unheld("When do the bins go out?", "Recycling bins go out on Monday night.") is None
    # A question of stop words alone holds nothing meaningful to leave out.
    assert unheld("What is it?", "Anything at all.") == "What is it?"
    # Scripts without spaces: the characters of the character pairs the sentence holds.
    assert unheld("王先生的生日是哪天", "与王先生的季度会议定在三月十日下午两点。") == "生日是哪天"


def test_names_are_the_capitalised_words_after_the_first() -> None:
    assert names("What is Karen Liu's mobile phone number?") == {"karen", "liu"}
    assert names("Who is their CSM?") == set()  # an abbreviation is not a name
    assert names("Who is Karen Liu?") == set()  # a question of names alone
    assert names("What Is The Billing Date") == set()  # every word capitalised


def test_confidence_is_words_and_the_meaning_of_the_rest() -> None:
    assert confidence(0.0, None, all_held=True) >= STRONG
    assert confidence(0.2, None, all_held=False) < ANSWER_FLOOR  # a few words, no meaning known
    assert confidence(0.0, 0.62, all_held=False) >= ANSWER_FLOOR  # a paraphrase
    assert confidence(0.0, 0.1, all_held=False) == 0.0


def test_names_weigh_less_in_what_a_sentence_holds_of_the_question() -> None:
    sentences = sentences_of([source("a", "Karen Liu likes video calls."), source("b", "The office is in Ohio.")])
    question = "What is Karen Liu's mobile number?"
    (plain,) = lexical_scores(question, sentences[:1])
    (weighed,) = lexical_scores(question, sentences[:1], names(question))
    assert 0 < weighed < plain


def test_nothing_to_say_without_sources() -> None:
    assert extract_answer("anything?", [], [], None).extracts == []


def test_a_title_is_a_sentence_of_its_memory() -> None:
    sources = [source("a", "Stored under Northwind/DPA-2026.pdf.", title="Signed DPA")]
    assert [s.text for s in sentences_of(sources)] == ["Signed DPA", "Stored under Northwind/DPA-2026.pdf."]


def test_the_kind_of_thing_a_question_asks_for() -> None:
    assert asked_for("How many sensors did Sunrise Dairy order?") == QUANTITY
    assert asked_for("how much does the car rental cost") == QUANTITY
    assert asked_for("How long do we keep database snapshots?") == QUANTITY
    assert asked_for("When is the next penetration test?") == TIME
    assert asked_for("What time does Alex's shift start?") == TIME
    assert asked_for("A direct debit bounced; when do I call billing?") == TIME  # it opens a clause
    # Inside a clause "when" is a conjunction, not what is asked.
    assert asked_for("Is there anything to watch out for when choosing a bathhouse?") is None
    assert asked_for("How do we stop certificates from lapsing?") is None
    assert asked_for("Which CDN do we use?") is None
    assert asked_for("季度会议是什么时候") is None  # English wording only


def test_what_a_sentence_must_hold_to_give_the_kind_asked_for() -> None:
    assert gives(QUANTITY, "Sunrise Dairy runs 6 plants.")
    assert gives(QUANTITY, "Jordan agreed to limit beer to two evenings a week.")
    assert gives(QUANTITY, "दिवाली पर गोदाम ५ दिन बंद रहेगा।")  # a digit of another script
    assert not gives(QUANTITY, "Umbrella Chemicals needs on-premise data storage.")
    assert gives(TIME, "The quarterly review moved to Thursday afternoon.")
    assert gives(TIME, "Recycling bins go out on Monday night.")
    assert gives(TIME, "Tickets are booked for 5 April at 11:00.")
    assert not gives(TIME, "Globex agreed to a surface-only trial at their crushing plant.")
    assert gives(None, "Anything at all.")  # nothing known of what is asked: any sentence


def test_a_sentence_without_the_kind_of_thing_asked_for_does_not_answer() -> None:
    # It holds every word of the question, yet no number: it cannot say how many.
    sources = [source("a", "Sunrise Dairy ordered sensors for its plants after the compressor failures.", 0.9)]
    question = "How many sensors did Sunrise Dairy order?"
    said = extract_answer(question, sources, sentences_of(sources), [0.7])
    assert said.extracts == []
    assert said.confidence < ANSWER_FLOOR
    # The same memory with the number answers, as surely as a sentence holding every word.
    sources = [source("a", "Sunrise Dairy ordered 40 sensors for its plants after the compressor failures.", 0.9)]
    said = extract_answer(question, sources, sentences_of(sources), [0.7])
    assert [e.sentence for e in said.extracts] == [sources[0].content]
    assert said.confidence >= STRONG
    assert confidence(1.0, None, all_held=True, gives_asked=False) == 0.0


def test_when_is_answered_by_a_sentence_with_a_time_only() -> None:
    sources = [source("a", "Globex agreed to a surface-only trial at their crushing plant. Karen likes calls.")]
    sentences = sentences_of(sources)
    assert extract_answer("When does the Globex trial end?", sources, sentences, [0.6, 0.1], [0.4]).extracts == []
    sources = [source("a", "The Globex trial at their crushing plant ends on 30 June. Karen likes calls.")]
    sentences = sentences_of(sources)
    said = extract_answer("When does the Globex trial end?", sources, sentences, [0.6, 0.1], [0.4])
    assert [e.sentence for e in said.extracts] == ["The Globex trial at their crushing plant ends on 30 June."]


def test_the_words_of_a_question_a_sentence_holds() -> None:
    sentence = "Jordan's fiancée Ruth runs marathons and joins the Sunday long walks."
    assert held_words("Which marathon is Jordan registered for?", sentence) == "marathon Jordan"
    assert held_words("What is the capital of Mongolia?", sentence) is None
    assert held_words("王先生的生日是哪天", "王先生喜欢微信") is None  # words of scripts without spaces: none


def test_a_sentence_the_question_adds_nothing_to_answers_only_its_subject() -> None:
    sources = [
        source("a", "The production database runs PostgreSQL 13 on a db.r5.2xlarge instance.", 0.9),
        source("b", "No production deploys on Fridays; database migrations run on Tuesdays.", 0.5),
    ]
    sentences = sentences_of(sources)
    question = "What is the root password of the production database?"
    # The whole question is no closer to either sentence (0.435, 0.3) than the words each
    # holds, "production database", are (0.476, 0.45): it asks for something they lack.
    said = extract_answer(question, sources, sentences, [0.435, 0.3], [0.13, 0.1], 3, [0.476, 0.45])
    assert said.extracts == []
    assert said.confidence < ANSWER_FLOOR
    # Without that comparison their words alone would answer.
    assert extract_answer(question, sources, sentences, [0.435, 0.3], [0.13, 0.1]).extracts
    # Closer as a whole (0.76) than by its held words (0.534): the rest of it is in the sentence.
    said = extract_answer(
        "Which Postgres version does the production database run?",
        sources[:1],
        sentences[:1],
        [0.76],
        [0.52],
        3,
        [0.534],
    )
    assert [e.sentence for e in said.extracts] == [sources[0].content]
    assert said.confidence >= ANSWER_FLOOR
    assert confidence(0.5, 0.3, all_held=False, added=-0.01) == round(confidence(0.5, 0.3, all_held=False) / 2, 4)
    assert confidence(0.5, 0.3, all_held=False, added=0.01) == confidence(0.5, 0.3, all_held=False)
