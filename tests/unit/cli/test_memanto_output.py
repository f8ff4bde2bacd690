"""How `memanto` writes values: numbers, hours and status words alike in every command."""

from __future__ import annotations

import pytest

from memanto_server.cli.memanto.output import hours_text, number_text, status_word, whole


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (6.0, "6"),
        (6, "6"),
        (0.0, "0"),
        (60.0, "60"),
        (0.8, "0.8"),
        (0.125, "0.125"),
        (2.5, "2.5"),
        (0.123456789, "0.123456789"),  # every digit a fraction has
        (1234567.0, "1234567"),  # never 1.23457e+06
        (-3.0, "-3"),
    ],
)
def test_whole_numbers_print_whole_and_fractions_in_full(value: float, shown: str) -> None:
    assert number_text(value) == shown


def test_whole_keeps_the_type_of_what_is_not_whole() -> None:
    assert whole(6.0) == 6
    assert isinstance(whole(6.0), int)
    assert whole(0.5) == 0.5
    assert whole(float("inf")) == float("inf")
    assert hours_text(6.0) == "6h"
    assert hours_text(0.25) == "0.25h"


@pytest.mark.parametrize("word", ["active", "superseded", "expired", "deactivated", "inactive", "ACTIVE", "Expired"])
def test_status_words_are_capitals(word: str) -> None:
    assert status_word(word) == word.upper()
