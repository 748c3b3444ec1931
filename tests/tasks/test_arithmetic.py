"""The embedded Arithmetic task: seeded, balanced, correct golds, grading per category."""

from __future__ import annotations

import pytest

from laser.errors import LaserConfigError
from laser.tasks.arithmetic import Arithmetic


def test_arithmetic_is_deterministic_per_seed() -> None:
    a, b, c = Arithmetic(seed=3), Arithmetic(seed=3), Arithmetic(seed=4)
    assert a.train_examples() == b.train_examples() and a.test_examples() == b.test_examples()
    assert a.train_examples() != c.train_examples()


def test_arithmetic_splits_are_disjoint_balanced_and_sized() -> None:
    task = Arithmetic()
    train, test = task.train_examples(), task.test_examples()
    assert (len(train), len(test)) == (2000, 200)
    assert not {e.question for e in train} & {e.question for e in test}
    assert len({e.question for e in train}) == len(train)
    for split, size in ((train, 2000), (test, 200)):
        assert [sum(e.category == c for e in split) for c in task.categories] == [size // 2] * 2
        answers = [e.answer for e in split if e.category == "comparison"]
        assert abs(answers.count("yes") - answers.count("no")) <= 1  # "always no" cannot win
    assert {e.category for e in train[:20]} == {"addition", "comparison"}  # shuffled together


def test_arithmetic_golds_are_correct() -> None:
    task = Arithmetic(max_operand=20, num_train=300, num_test=50)
    for example in task.train_examples() + task.test_examples():
        a, b = example.meta["a"], example.meta["b"]
        assert 0 <= a <= 20 and 0 <= b <= 20
        if example.category == "addition":
            assert example.question == f"What is {a} + {b}?" and example.answer == str(a + b)
        else:
            assert example.question == f"Is {a} larger than {b}?"
            assert example.answer == ("yes" if a > b else "no")
        assert example.target == f" {example.answer}"
        assert task.format_prompt(example) == f"Q: {example.question}\nA:"


def test_arithmetic_is_correct_for_both_categories() -> None:
    task = Arithmetic(num_train=10, num_test=10)
    add = next(e for e in task.train_examples() if e.category == "addition")
    cmp_ = next(e for e in task.train_examples() if e.category == "comparison")
    right, wrong = cmp_.answer, "no" if cmp_.answer == "yes" else "yes"
    assert task.is_correct(f" {add.answer}", add)
    assert task.is_correct(f" {add.answer} and 99 more", add)  # the first integer counts
    assert not task.is_correct(f" {int(add.answer) + 1} {add.answer}", add)
    assert not task.is_correct(" yes", add) and not task.is_correct("", add)
    assert task.is_correct(f" {right.capitalize()}, 3", cmp_)  # first yes/no word, even after digits
    assert task.is_correct(f" 12 {right}", cmp_)
    assert not task.is_correct(f" {wrong} {right}", cmp_)
    assert task.extract_answer(" 42 no") == "42" and task.extract_answer(" no 42") == "no"
    assert task.extract_answer(" True") == "yes" and task.extract_answer("???") is None


def test_arithmetic_evaluate_reports_per_category_accuracy() -> None:
    task = Arithmetic(num_train=10, num_test=40)
    test = task.test_examples()
    responses = [e.target if e.category == "addition" else " maybe" for e in test]
    metrics = task.evaluate(responses, test)
    assert metrics["test/accuracy/addition"] == 1.0
    assert metrics["test/accuracy/comparison"] == 0.0
    assert metrics["test/accuracy"] == 0.5


def test_arithmetic_rejects_bad_config() -> None:
    with pytest.raises(LaserConfigError, match="subtraction"):
        Arithmetic(categories=("addition", "subtraction"))
    with pytest.raises(LaserConfigError, match="max_operand=5"):
        Arithmetic(max_operand=5)  # 2,200 examples cannot be distinct with operands 0..5
    only_addition = Arithmetic(categories=["addition"], num_train=20, num_test=5)
    assert {e.category for e in only_addition.train_examples()} == {"addition"}


def test_arithmetic_maximum_category_and_small_addends() -> None:
    task = Arithmetic(num_train=300, num_test=60, max_operand=60, max_addend=3,
                      categories=["addition", "maximum"])
    for example in task.train_examples() + task.test_examples():
        a, b = example.meta["a"], example.meta["b"]
        if example.category == "maximum":
            assert example.answer == str(max(a, b)) and a != b
            assert task.is_correct(f" {max(a, b)}", example) and not task.is_correct(f" {min(a, b)}", example)
        else:
            assert b <= 3 and example.answer == str(a + b)
    with pytest.raises(LaserConfigError, match="max_addend"):
        Arithmetic(max_addend=-1)


def test_arithmetic_minimum_and_parity_questions_for_hand_picked_indices() -> None:
    task = Arithmetic(num_train=10, num_test=4, categories=["minimum", "parity"])
    # Pair index 2 is (1, 2); an even position asks the larger operand first.
    first, second = task.make_example("minimum", 2, 0), task.make_example("minimum", 2, 1)
    assert (first.question, first.answer, first.target) == ("Which is smaller, 2 or 1?", "1", " 1")
    assert (second.question, second.answer) == ("Which is smaller, 1 or 2?", "1")
    assert first.uid == "minimum-2-1" and first.meta == {"a": 2, "b": 1}
    # Parity index 18 is the pair {36, 37}: the even number at an even position, the odd one at an odd.
    even, odd = task.make_example("parity", 18, 0), task.make_example("parity", 18, 1)
    assert (even.question, even.answer, even.target) == ("Is 36 even?", "yes", " yes")
    assert (odd.question, odd.answer, odd.uid) == ("Is 37 even?", "no", "parity-37")
    assert task.make_example("maximum", 2, 1).question == "Which is larger, 1 or 2?"


def test_arithmetic_minimum_and_parity_are_balanced_disjoint_and_in_range() -> None:
    task = Arithmetic(num_train=1200, num_test=300, categories=["comparison", "minimum", "parity"])
    train, test = task.train_examples(), task.test_examples()
    assert not {e.question for e in train} & {e.question for e in test}
    assert len({e.question for e in train + test}) == len(train) + len(test)
    for split, size in ((train, 400), (test, 100)):
        assert [sum(e.category == c for e in split) for c in task.categories] == [size] * 3
        for category in ("comparison", "parity"):
            answers = [e.answer for e in split if e.category == category]
            assert abs(answers.count("yes") - answers.count("no")) <= 1  # "always no" cannot win
    for example in train + test:
        if example.category == "parity":
            n = example.meta["n"]
            assert 0 <= n <= 51 ** 2 - 1 and example.question == f"Is {n} even?"
            assert example.answer == ("yes" if n % 2 == 0 else "no")
        elif example.category == "minimum":
            a, b = example.meta["a"], example.meta["b"]
            assert a != b and example.answer == str(min(a, b))
    parity_numbers = [e.meta["n"] for e in train if e.category == "parity"]
    assert max(parity_numbers) > 51 * 50  # drawn from the whole range, not just 0..max_operand


def test_arithmetic_grades_minimum_as_a_number_and_parity_as_yes_no() -> None:
    task = Arithmetic(num_train=10, num_test=4, categories=["minimum", "parity"])
    minimum, odd = task.make_example("minimum", 2, 0), task.make_example("parity", 18, 1)
    assert task.is_correct(" 1", minimum) and task.is_correct(" 1 or 2", minimum)
    assert not task.is_correct(" 2 1", minimum) and not task.is_correct(" no", minimum)
    assert task.is_correct(" no", odd) and task.is_correct(" False", odd) and task.is_correct(" 37 no", odd)
    assert not task.is_correct(" yes", odd) and not task.is_correct(" 37", odd) and not task.is_correct("", odd)


def test_arithmetic_parity_pool_caps_the_number_of_questions() -> None:
    task = Arithmetic(num_train=54, num_test=6, max_operand=10, categories=["parity"])  # 11**2 // 2 = 60 pairs
    assert len({e.question for e in task.train_examples() + task.test_examples()}) == 60
    with pytest.raises(LaserConfigError, match="61 distinct parity questions"):
        Arithmetic(num_train=55, num_test=6, max_operand=10, categories=["parity"])
