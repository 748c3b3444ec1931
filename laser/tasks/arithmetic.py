"""Arithmetic: the embedded task, generated from a seed, so the whole pipeline runs with no files."""

from __future__ import annotations

import math
import random
import re

from laser.errors import LaserConfigError
from laser.tasks.base import Example, Task, choose_stop_strings

CATEGORIES = ("addition", "comparison", "maximum", "minimum", "parity")
NUMERIC = ("addition", "maximum", "minimum")  # categories whose answer is a number
YES_NO = ("comparison", "parity")  # categories whose answer is yes or no
DEFAULT_CATEGORIES = ("addition", "comparison")

# The first integer / first yes-no word: a tiny policy's answer comes first, and whatever it
# babbles afterwards (often more digits) must not count.
_FIRST_INTEGER_RE = re.compile(r"(?<![\w.])-?\d+|\d+")
_FIRST_YES_NO_RE = re.compile(r"\b(yes|no|true|false)\b", re.IGNORECASE)
_FIRST_ANSWER_RE = re.compile(rf"{_FIRST_INTEGER_RE.pattern}|{_FIRST_YES_NO_RE.pattern}", re.IGNORECASE)
_YES_NO_MAP = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


# (a, b) -> (question, gold answer), for the categories asked about two operands.
_TWO_OPERAND_QUESTIONS = {
    "addition": lambda a, b: (f"What is {a} + {b}?", str(a + b)),
    "comparison": lambda a, b: (f"Is {a} larger than {b}?", "yes" if a > b else "no"),
    "maximum": lambda a, b: (f"Which is larger, {a} or {b}?", str(max(a, b))),
    "minimum": lambda a, b: (f"Which is smaller, {a} or {b}?", str(min(a, b))),
}


class Arithmetic(Task):
    """Addition ("What is 23 + 19?" -> "42"), comparison ("Is 37 larger than 52?" -> "no"), maximum
    ("Which is larger, 37 or 52?" -> "52"), minimum ("Which is smaller, 37 or 52?" -> "37") and parity
    ("Is 37 even?" -> "no"); any subset of them, addition and comparison by default.

    Why it exists: a task small enough that a ~1M-parameter policy trained from scratch learns the
    format in about a minute on 2 CPU cores, yet with categories on which different reward
    models can be made reliable, so the bandit's choice of RM visibly changes what the policy
    learns. Examples are generated from `seed` (no files), balanced between categories, and no
    question appears in both train and test.
    """

    name = "arithmetic"
    categories: tuple[str, ...] = DEFAULT_CATEGORIES
    prompt_template = "Q: {question}\nA:"  # short on purpose: the tiny policy must learn it fast
    # The next block; the warm-started tiny policy ends with EOS (no default-run response holds "\nQ:")
    stop_strings: tuple[str, ...] = ("\nQ:",)

    def __init__(
        self,
        num_train: int = 2000,
        num_test: int = 200,
        seed: int = 0,
        max_operand: int = 50,
        max_addend: int | None = None,
        categories: tuple[str, ...] | list[str] = DEFAULT_CATEGORIES,
        stop_strings: list[str] | None = None,
    ) -> None:
        categories = tuple(categories)  # Hydra passes a ListConfig
        unknown = [c for c in categories if c not in CATEGORIES]
        if unknown or not categories or len(set(categories)) != len(categories):
            raise LaserConfigError(
                f"task.categories={list(categories)!r} must be distinct names from {list(CATEGORIES)}"
            )
        for key, value in (("num_train", num_train), ("num_test", num_test)):
            if not isinstance(value, int) or value < 0:
                raise LaserConfigError(f"task.{key}={value!r} must be a non-negative integer")
        if not isinstance(max_operand, int) or max_operand < 1:
            raise LaserConfigError(f"task.max_operand={max_operand!r} must be a positive integer")
        self.num_train, self.num_test = num_train, num_test
        if max_addend is not None and (not isinstance(max_addend, int) or max_addend < 0):
            raise LaserConfigError(f"task.max_addend={max_addend!r} must be null or a non-negative integer")
        self.seed, self.max_operand = seed, max_operand
        # The second addend's range: small values keep sums learnable by a tiny policy (mostly copying).
        self.max_addend = max_operand if max_addend is None else max_addend
        self.categories = categories
        self.stop_strings = choose_stop_strings(stop_strings, self.stop_strings)
        self._train, self._test = self._generate()

    def train_examples(self) -> list[Example]:
        """`num_train` generated examples, categories balanced and shuffled together."""
        return self._train

    def test_examples(self) -> list[Example]:
        """`num_test` generated examples, none of whose questions is in the training set."""
        return self._test

    def format_prompt(self, example: Example) -> str:
        """The question as "Q: <question>\\nA:"; the policy's response (e.g. " 42") follows directly."""
        return self.prompt_template.format(question=example.question)

    def extract_answer(self, response: str) -> str | None:
        """The first integer or yes/no word in the response, whichever comes first.

        Works without knowing the category; `is_correct` uses the category to be stricter.
        """
        if not isinstance(response, str):
            return None
        match = _FIRST_ANSWER_RE.search(response)
        if match is None:
            return None
        token = match.group(0).lower()
        return _YES_NO_MAP.get(token, str(int(token)) if token.lstrip("-").isdigit() else None)

    def is_correct(self, response: str, example: Example) -> bool:
        """Grade with the extractor of the example's category: first integer for addition, maximum and
        minimum, first yes/no word for comparison and parity (so "no, 3" is a correct yes/no answer)."""
        if not isinstance(response, str):
            return False
        if example.category in NUMERIC:
            match = _FIRST_INTEGER_RE.search(response)
            predicted = str(int(match.group(0))) if match else None
        elif example.category in YES_NO:
            match = _FIRST_YES_NO_RE.search(response)
            predicted = _YES_NO_MAP[match.group(1).lower()] if match else None
        else:
            predicted = self.extract_answer(response)
        return predicted is not None and predicted == example.answer

    # ----- generation --------------------------------------------------------------------------

    def _generate(self) -> tuple[list[Example], list[Example]]:
        rng = random.Random(self.seed)
        train_counts = _split_evenly(self.num_train, len(self.categories))
        test_counts = _split_evenly(self.num_test, len(self.categories))
        train: list[Example] = []
        test: list[Example] = []
        for category, n_train, n_test in zip(self.categories, train_counts, test_counts, strict=True):
            pool = self._pool_size(category)
            if n_train + n_test > pool:
                raise LaserConfigError(
                    f"task.num_train + task.num_test needs {n_train + n_test} distinct {category} questions "
                    f"but task.max_operand={self.max_operand} allows only {pool}; raise task.max_operand"
                )
            # Sampling distinct pool indices, then cutting the list, is what makes the splits disjoint.
            indices = rng.sample(range(pool), n_train + n_test)
            examples = [self.make_example(category, index, position) for position, index in enumerate(indices)]
            train += examples[:n_train]
            test += examples[n_train:]
        rng.shuffle(train)  # mix categories so any prefix or batch sees both
        rng.shuffle(test)
        return train, test

    def _pool_size(self, category: str) -> int:
        size = self.max_operand + 1  # operands are 0..max_operand
        if category == "addition":  # ordered pairs: 3 + 5 and 5 + 3 are different questions
            return size * (self.max_addend + 1)
        if category == "parity":  # 0..size**2 - 1 as pairs {2k, 2k + 1}, one number of each pair asked
            return size * size // 2
        return size * (size - 1) // 2  # unordered pairs of distinct numbers, each asked one way round

    def make_example(self, category: str, index: int, position: int) -> Example:
        """The `index`-th question of `category`'s pool; an even `position` asks the larger operand first
        (two-operand categories) or the even number of the pair (parity). Alternating by position is
        what makes yes and no, and first and second operand, equally common."""
        if category == "parity":
            n = 2 * index + position % 2
            answer = "yes" if n % 2 == 0 else "no"
            return Example(uid=f"parity-{n}", question=f"Is {n} even?", answer=answer, target=f" {answer}",
                           category=category, meta={"n": n})
        if category == "addition":
            a, b = divmod(index, self.max_addend + 1)
        else:
            small, large = _unordered_pair(index)
            a, b = (large, small) if position % 2 == 0 else (small, large)
        question, answer = _TWO_OPERAND_QUESTIONS[category](a, b)
        return Example(uid=f"{category}-{a}-{b}", question=question, answer=answer, target=f" {answer}",
                       category=category, meta={"a": a, "b": b})


def _split_evenly(total: int, parts: int) -> list[int]:
    """`total` split into `parts` counts differing by at most one (earlier parts get the extra)."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def _unordered_pair(index: int) -> tuple[int, int]:
    """The index-th pair (x, y) with 0 <= x < y, enumerated as (0,1), (0,2), (1,2), (0,3), ..."""
    y = (1 + math.isqrt(1 + 8 * index)) // 2
    x = index - y * (y - 1) // 2
    return x, y
