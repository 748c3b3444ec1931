"""Answer extraction: small pure functions that pull a final answer out of free model text.

Every function takes arbitrary text and returns a normalised string or None; none of them raises,
because policy samples (especially early in training) can be any garbage at all.
"""

from __future__ import annotations

import re

# A number as people write it: optional sign and "$", thousands separators only in groups of three
# (so "1,2,3" is three numbers, not 123), optional decimals. The sign counts only when it does not
# follow a word or digit, so "16-3-4" reads as 16, 3, 4 rather than 16, -3, -4.
_NUMBER = r"(?:(?<![\w.])[-+])?\$?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_NUMBER_RE = re.compile(_NUMBER)

# lm-evaluation-harness's gsm8k strict-match is "#### (\-?[0-9\.\,]+)"; we also allow "$" and any
# spacing after the marker, and hand the capture to `normalise_number` which rejects "..." etc.
_STRICT_RE = re.compile(r"####\s*\$?\s*(-?[0-9.,]+)")

_FINAL_LINE_RE = re.compile(
    r"(?:final answer\s*(?:is\b)?\s*:?|the answer is\b\s*:?)[ \t*]*(?P<rest>[^\n]*)", re.IGNORECASE
)
_YES_NO_RE = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
_YES_NO_MAP = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def normalise_number(text: str) -> str | None:
    """The canonical string form of a number, or None when `text` is not one number.

    Strips "$", thousands commas, surrounding spaces, a trailing "." and zero decimals, so that a
    model's "$1,234.00" and the gold "1234" compare equal as strings.

    >>> normalise_number("1,234.00"), normalise_number("-3.50"), normalise_number("$18")
    ('1234', '-3.5', '18')
    >>> normalise_number("18."), normalise_number("007"), normalise_number(".5")
    ('18', '7', '0.5')
    >>> normalise_number("twelve") is None, normalise_number("1.2.3") is None
    (True, True)
    """
    if not isinstance(text, str):
        return None
    cleaned = text.strip().replace("$", "").replace(",", "").rstrip(".").strip()
    match = re.fullmatch(r"([-+]?)(\d*)(?:\.(\d+))?", cleaned)
    if match is None or not (match.group(2) or match.group(3)):
        return None
    sign, whole, decimals = match.group(1), match.group(2) or "0", (match.group(3) or "").rstrip("0")
    digits = str(int(whole)) + (f".{decimals}" if decimals else "")
    # "-0" and "-0.0" are zero; keep the sign only on a non-zero value.
    return "-" + digits if sign == "-" and digits.strip("0.") else digits


def extract_strict_gsm8k(text: str) -> str | None:
    """The number after the last "#### " (lm-evaluation-harness's strict-match), normalised.

    >>> extract_strict_gsm8k("2 + 2 = 4, plus 14 is 18.\\n#### 18")
    '18'
    >>> extract_strict_gsm8k("#### 1,080") , extract_strict_gsm8k("The answer is 18") is None
    ('1080', True)
    """
    if not isinstance(text, str):
        return None
    matches = _STRICT_RE.findall(text)
    return normalise_number(matches[-1]) if matches else None


def extract_last_number(text: str) -> str | None:
    """The last number anywhere in the text, normalised (lm-evaluation-harness's flexible-extract).

    >>> extract_last_number("She sells 9 eggs at $2, making $18 a day.")
    '18'
    >>> extract_last_number("16-3-4 = 9"), extract_last_number("It costs 1,200.50 dollars.")
    ('9', '1200.5')
    >>> extract_last_number("no digits here") is None
    True
    """
    if not isinstance(text, str):
        return None
    for candidate in reversed(_NUMBER_RE.findall(text)):
        number = normalise_number(candidate)
        if number is not None:
            return number
    return None


def extract_final_answer_line(text: str) -> str | None:
    """What follows the last "Final answer:" / "The answer is" on its line, stripped; None if absent.

    Case-insensitive; also accepts "The final answer is" and markdown bold ("**Final answer:** 7").
    Trailing sentence punctuation is dropped so "The answer is 42." gives "42".

    >>> extract_final_answer_line("Some reasoning.\\nFinal answer: No")
    'No'
    >>> extract_final_answer_line("so the answer is 3.5.")
    '3.5'
    >>> extract_final_answer_line("no marker here") is None
    True
    """
    return _rest_of_last_match(_FINAL_LINE_RE, text)


def _rest_of_last_match(pattern: re.Pattern[str], text: str) -> str | None:
    """The `rest` group of the last match of `pattern` in `text`, without markdown bold or trailing
    sentence punctuation; None when nothing matches, the rest is empty or `text` is not a string."""
    if not isinstance(text, str):
        return None
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    rest = matches[-1].group("rest").strip().strip("*").strip().rstrip(".!").strip()
    return rest or None


def extract_yes_no(text: str) -> str | None:
    """The answer "yes" or "no" from a response; True/False count as yes/no. None when neither appears.

    A "Final answer:" line wins (its first yes/no word); otherwise the last yes/no word in the text,
    since reasoning often mentions both before concluding.

    >>> extract_yes_no("Final answer: No")
    'no'
    >>> extract_yes_no("Yes, at first it seems so... but no.")
    'no'
    >>> extract_yes_no("True"), extract_yes_no("nothing to see") is None
    ('yes', True)
    """
    if not isinstance(text, str):
        return None
    final = extract_final_answer_line(text)
    if final is not None:
        match = _YES_NO_RE.search(final)
        if match is not None:
            return _YES_NO_MAP[match.group(1).lower()]
    matches = _YES_NO_RE.findall(text)
    return _YES_NO_MAP[matches[-1].lower()] if matches else None


# Strict variants read only the exact format the prompts ask for: "Final answer:" with its colon
# ("**Final answer**:" too), not "The answer is". The last such line wins, as a model may revise.
_STRICT_FINAL_RE = re.compile(r"final answer[ \t*]*:[ \t*]*(?P<rest>[^\n]*)", re.IGNORECASE)
# A choice letter standing alone: not inside a word, an abbreviation ("U.S.A.", "D.C.") or "A's".
_LETTER = r"(?<![\w.'’])([{letters}])(?![\w'’]|\.\w)"
_PAREN_LETTER = r"\(([{letters}])\)"


# The answer line of each `task.answer_format` (see laser.tasks.answer_format): "Final answer: 72"
# (the LASeR authors' prompt) or "#### 72" (GSM8K's own solutions).
_HASH_RE = re.compile(r"####[ \t*]*(?P<rest>[^\n]*)")
_MARKED_LINE_RES = {"final_answer": _STRICT_FINAL_RE, "hash": _HASH_RE}


def extract_strict_final_answer(text: str) -> str | None:
    """What follows the last "Final answer:" (colon required) on its line, stripped; None if absent.

    >>> extract_strict_final_answer("so, yes.\\n**Final answer:** Yes.")
    'Yes'
    >>> extract_strict_final_answer("The answer is no") is None
    True
    """
    return _rest_of_last_match(_STRICT_FINAL_RE, text)


def extract_marked_line(text: str, answer_format: str = "final_answer") -> str | None:
    """What follows the last answer marker of `answer_format` ("Final answer:" or "####") on its line,
    stripped; None when the response has no such line (strict extraction then finds nothing).

    >>> extract_marked_line("So 72.\\n#### 72", "hash"), extract_marked_line("#### 72") is None
    ('72', True)
    """
    return _rest_of_last_match(_MARKED_LINE_RES[answer_format], text)


def extract_strict_number(text: str, answer_format: str = "final_answer") -> str | None:
    """GSM8K's strict answer: the first number on the last "Final answer:" line, or (answer_format
    "hash") lm-evaluation-harness's strict-match on "#### N"; normalised, None without the marker.

    The first number, not the last: the line should hold the answer itself, and "Final answer: 72
    (48 + 24)" means 72; a line that starts with a calculation is the model not following the format.

    >>> extract_strict_number("... so $1,080.\\nFinal answer: $1,080."), extract_strict_number("It is 7") is None
    ('1080', True)
    >>> extract_strict_number("#### 18", "hash"), extract_strict_number("Final answer: 18", "hash") is None
    ('18', True)
    """
    if answer_format == "hash":
        return extract_strict_gsm8k(text)
    line = extract_marked_line(text, answer_format)
    match = _NUMBER_RE.search(line) if line is not None else None
    return normalise_number(match.group(0)) if match is not None else None


def extract_strict_yes_no(text: str, answer_format: str = "final_answer") -> str | None:
    """The first yes/no (or true/false) word on the last "Final answer:" (or "####") line; None
    without one.

    >>> extract_strict_yes_no("Facts... Final answer: No."), extract_strict_yes_no("True") is None
    ('no', True)
    """
    final = extract_marked_line(text, answer_format)
    match = _YES_NO_RE.search(final) if final is not None else None
    return _YES_NO_MAP[match.group(1).lower()] if match is not None else None


def _letter_on_line(line: str, letters: str) -> str | None:
    """A choice letter on an answer line: the whole line ("c"), "(C)", or the first lone capital."""
    if not letters:
        return None
    if len(line) == 1 and line.upper() in letters:
        return line.upper()  # "Final answer: c" is unambiguous, so lower case is allowed here
    paren = re.search(_PAREN_LETTER.format(letters=letters + letters.lower()), line)
    if paren is not None:
        return paren.group(1).upper()
    lone = re.search(_LETTER.format(letters=letters), line)
    return lone.group(1) if lone is not None else None


def extract_strict_choice(text: str, letters: str = "ABCD", answer_format: str = "final_answer") -> str | None:
    """The choice letter on the last "Final answer:" (or "####") line; None when that line is absent
    or has none.

    >>> extract_strict_choice("A and B are wrong.\\nFinal answer: (C)"), extract_strict_choice("(C)") is None
    ('C', True)
    """
    final = extract_marked_line(text, answer_format)
    return _letter_on_line(final, letters) if final is not None else None


def extract_choice_letter(text: str, letters: str = "ABCD") -> str | None:
    """A multiple-choice answer letter from free text (flexible): the letter on the last
    "Final answer:" / "The answer is" line if it has one, else the last "(X)" or lone capital X.

    Lone capitals are the fallback only because "A" is also an English word; prompts ask for a
    "Final answer:" line, which wins whenever it is there.

    >>> extract_choice_letter("The answer is B."), extract_choice_letter("not (A) but (C), since D.C. is")
    ('B', 'C')
    >>> extract_choice_letter("A and B are wrong, Final answer: C"), extract_choice_letter("none") is None
    ('C', True)
    """
    if not isinstance(text, str) or not letters:
        return None
    final = extract_final_answer_line(text)
    letter = _letter_on_line(final, letters) if final is not None else None
    if letter is not None:
        return letter
    # Upper case only here: "(a)" and "a" in running text are more often enumerations and words.
    matches = list(re.finditer(f"{_PAREN_LETTER}|{_LETTER}".format(letters=letters), text))
    return (matches[-1].group(1) or matches[-1].group(2)) if matches else None
