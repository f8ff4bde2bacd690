"""The recall query grammar: words, phrases, exclusions, character pairs, typo candidates."""

from __future__ import annotations

from memanto_server.memories.search.grammar import (
    GRAM,
    PHRASE,
    TYPO,
    WORD,
    Term,
    ngrams,
    parse,
    with_corrections,
    words,
)


def texts(query: str) -> list[tuple[str, str]]:
    return [(t.text, t.kind) for t in parse(query).terms]


def test_every_meaningful_word_is_a_term_of_its_own_group() -> None:
    parsed = parse("How does the customer want to be contacted?")
    assert [(t.text, t.kind) for t in parsed.terms] == [("customer", WORD), ("want", WORD), ("contacted", WORD)]
    assert [t.group for t in parsed.terms] == [0, 1, 2]
    assert [w for _, w in parsed.typo_words] == ["customer", "want", "contacted"]


def test_or_and_and_are_plain_words_and_stop_words_are_dropped() -> None:
    assert texts("cats or dogs and the birds") == [("cats", WORD), ("dogs", WORD), ("birds", WORD)]


def test_quotes_make_a_phrase_and_a_minus_excludes() -> None:
    parsed = parse('"blue car" -red -"green van" fast')
    assert [(t.text, t.kind) for t in parsed.terms] == [("blue car", PHRASE), ("fast", WORD)]
    assert parsed.excluded == ("red", "green", "van")


def test_unbalanced_quotes_and_lone_operators_parse() -> None:
    assert texts('"car OR -') == [("car or", PHRASE)]
    assert texts('- -- ""') == []


def test_hindi_words_keep_their_vowel_signs() -> None:
    # Python's [^\W_]+ would cut नमस्ते at its combining marks.
    assert words("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]
    assert texts("शर्मा जी को कब फोन करना चाहिए?")[0] == ("शर्मा", WORD)


def test_scripts_without_spaces_become_overlapping_pairs() -> None:
    assert ngrams("東京都に住む") == ["東京", "京都", "都に", "に住", "住む"]
    assert ngrams("猫") == ["猫"]
    assert ngrams("plain english") == []
    assert texts("ลูกค้า") == [("ลู", GRAM), ("ูก", GRAM), ("กค", GRAM), ("ค้", GRAM), ("้า", GRAM)]
    # A mixed token: its Latin part is a word, its Japanese part pairs.
    assert texts("Tokyo東京") == [("tokyo", WORD), ("東京", GRAM)]


def test_cyrillic_and_arabic_are_whole_lower_cased_words() -> None:
    assert texts("Где находится СКЛАД") == [("где", WORD), ("находится", WORD), ("склад", WORD)]
    assert texts("العميل في دبي") == [("العميل", WORD), ("في", WORD), ("دبي", WORD)]


def test_numbers_and_short_words_are_not_worth_a_typo_correction() -> None:
    parsed = parse("room 42 ox invoce")
    assert [w for _, w in parsed.typo_words] == ["room", "invoce"]


def test_repeated_words_count_once_and_long_queries_are_cut() -> None:
    assert texts("invoice invoice INVOICE") == [("invoice", WORD)]
    assert len(parse(" ".join(f"word{i}" for i in range(100))).terms) == 24


def test_corrections_join_the_group_of_the_word_they_correct() -> None:
    parsed = with_corrections(parse("emial billing"), {"emial": ["email", "emails"]}, 0.7)
    assert parsed.terms[2:] == (Term("email", TYPO, 0, 0.7), Term("emails", TYPO, 0, 0.7))
