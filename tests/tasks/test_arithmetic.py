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
