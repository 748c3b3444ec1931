"""Answer extraction: hand cases for every extractor, and no text makes one raise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from laser.tasks.arithmetic import Arithmetic
from laser.tasks.extraction import (
    extract_choice_letter,
    extract_final_answer_line,
    extract_last_number,
    extract_marked_line,
    extract_strict_choice,
    extract_strict_final_answer,
    extract_strict_gsm8k,
    extract_strict_number,
    extract_strict_yes_no,
    extract_yes_no,
    normalise_number,
)

# fmt: off
EXTRACTORS = [normalise_number, extract_strict_gsm8k, extract_last_number, extract_final_answer_line, extract_yes_no,
              extract_strict_number, extract_marked_line, lambda t: extract_marked_line(t, "hash")]


NUMBER_CASES = [
    ("1,234.00", "1234"), ("-3.50", "-3.5"), ("$18", "18"), ("18.", "18"), (" 42 ", "42"),
    ("0.250", "0.25"), (".5", "0.5"), ("007", "7"), ("-0.0", "0"), ("109,200,000", "109200000"),
    ("twelve", None), ("", None), ("1.2.3", None), ("$", None), ("-", None), ("18 dollars", None),
]


ODD_TEXTS = ["", " ", "\n\n", "####", "#### ", "$$$,,,...", "—–-+", "ñ 日本語 🙂", "\x00\x7f", "-" * 10000]


@pytest.mark.parametrize(("text", "expected"), NUMBER_CASES)
def test_normalise_number(text: str, expected: str | None) -> None:
    assert normalise_number(text) == expected


@pytest.mark.parametrize(
    ("extract", "text", "expected"),
    [
        (extract_strict_gsm8k, "She makes $18.\n#### 18", "18"),
        (extract_strict_gsm8k, "#### 5\nwait, recount\n#### 7", "7"),  # the last marker wins
        (extract_strict_gsm8k, "#### $1,080.00", "1080"),
        (extract_strict_gsm8k, "####-4", "-4"),
        (extract_strict_gsm8k, "The answer is 18", None),  # strict needs the marker
        (extract_strict_gsm8k, "#### ...", None),
        (extract_last_number, "9 eggs at $2 makes $18 a day.", "18"),
        (extract_last_number, "16-3-4 = 9", "9"),  # hyphens between numbers are not minus signs
        (extract_last_number, "so the total is -7.", "-7"),
        (extract_last_number, "It costs 1,200.50 dollars", "1200.5"),
        (extract_last_number, "numbers 1,2,3", "3"),  # not thousands groups, so not 123
        (extract_last_number, "version 2 of 3.0", "3"),
        (extract_last_number, "no digits", None),
        (extract_final_answer_line, "reasoning\nFinal answer: No", "No"),
        (extract_final_answer_line, "The answer is 42.", "42"),
        (extract_final_answer_line, "final ANSWER:  **7**", "7"),
        (extract_final_answer_line, "Final answer: 3\nThe final answer is 5", "5"),  # the last marker wins
        (extract_final_answer_line, "Final answer: yes\nmore text after", "yes"),  # the marker's line only
        (extract_final_answer_line, "Final answer:", None),
        (extract_final_answer_line, "nothing here", None),
        (extract_yes_no, "Yes", "yes"),
        (extract_yes_no, "no.", "no"),
        (extract_yes_no, "True", "yes"),
        (extract_yes_no, "FALSE", "no"),
        (extract_yes_no, "Final answer: No", "no"),
        (extract_yes_no, "Final answer: no. Yes, I am sure.", "no"),  # the final line beats the last word
        (extract_yes_no, "Yes at first, but on reflection no", "no"),  # otherwise the last word
        (extract_yes_no, "Nothing is known, nobody knows", None),  # "no" only as a whole word
        (extract_yes_no, "", None),
    ],
)
def test_extractors_on_hand_cases(extract, text: str, expected: str | None) -> None:
    assert extract(text) == expected


@pytest.mark.parametrize("text", ODD_TEXTS)
@pytest.mark.parametrize("extract", EXTRACTORS)
def test_extraction_never_raises_on_odd_text(extract, text: str) -> None:
    result = extract(text)
    assert result is None or isinstance(result, str)


@given(st.text())
def test_extraction_never_raises_on_any_text(text: str) -> None:
    for extract in EXTRACTORS:
        result = extract(text)
        assert result is None or isinstance(result, str)


NEW_EXTRACTORS = [extract_strict_final_answer, extract_strict_yes_no, extract_strict_choice, extract_choice_letter]


@pytest.mark.parametrize(
    ("extract", "text", "expected"),
    [
        (extract_strict_final_answer, "so.\n**Final answer**: Yes.", "Yes"),
        (extract_strict_final_answer, "The answer is no", None),  # strict needs "Final answer:"
        (extract_strict_yes_no, "Facts.\nFinal answer: No.", "no"),
        (extract_strict_yes_no, "True", None),
        (extract_strict_choice, "Final answer: (c)", "C"),
        (extract_strict_choice, "Final answer: c", "C"),
        (extract_strict_choice, "The answer is B.", None),
        (extract_choice_letter, "(C)", "C"),
        (extract_choice_letter, "The answer is B.", "B"),
        (extract_choice_letter, "Final answer: D", "D"),
        (extract_choice_letter, "A and B are wrong, Final answer: C", "C"),
        (extract_choice_letter, "B is right; D.C. and the U.S.A. are not", "B"),  # not abbreviations
        (extract_choice_letter, "A is wrong, so it must be D", "D"),  # the last lone capital
        (extract_choice_letter, "I am not sure, and it's a guess", None),  # lower case never counts
    ],
)
def test_new_extractors_on_hand_cases(extract, text: str, expected: str | None) -> None:
    assert extract(text) == expected


@given(st.text())
def test_new_extractors_never_raise(text: str) -> None:
    for extract in NEW_EXTRACTORS:
        result = extract(text)
        assert result is None or isinstance(result, str)


@given(st.text(max_size=200))
def test_answer_extraction_never_raises(text):
    task = Arithmetic(num_train=4, num_test=2)
    for extract in (extract_last_number, extract_strict_gsm8k, extract_yes_no, normalise_number, task.extract_answer):
        result = extract(text)
        assert result is None or isinstance(result, str)
