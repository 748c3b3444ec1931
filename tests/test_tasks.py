"""Tasks: answer extraction (hand cases and real GSM8K rows), GSM8K loading, the embedded Arithmetic task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import OmegaConf

from laser.errors import LaserConfigError
from laser.tasks.arithmetic import Arithmetic
from laser.tasks.base import Example
from laser.tasks.extraction import (
    extract_final_answer_line,
    extract_last_number,
    extract_marked_line,
    extract_strict_gsm8k,
    extract_strict_number,
    extract_yes_no,
    normalise_number,
)
from laser.tasks.gsm8k import GSM8K

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
GSM8K_DIR = SHARED_DATA / "gsm8k"

# fmt: off
EXTRACTORS = [normalise_number, extract_strict_gsm8k, extract_last_number, extract_final_answer_line, extract_yes_no,
              extract_strict_number, extract_marked_line, lambda t: extract_marked_line(t, "hash")]
NUMBER_CASES = [
    ("1,234.00", "1234"), ("-3.50", "-3.5"), ("$18", "18"), ("18.", "18"), (" 42 ", "42"),
    ("0.250", "0.25"), (".5", "0.5"), ("007", "7"), ("-0.0", "0"), ("109,200,000", "109200000"),
    ("twelve", None), ("", None), ("1.2.3", None), ("$", None), ("-", None), ("18 dollars", None),
]
ODD_TEXTS = ["", " ", "\n\n", "####", "#### ", "$$$,,,...", "—–-+", "ñ 日本語 🙂", "\x00\x7f", "-" * 10000]
# fmt: on


@pytest.fixture(scope="module")
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "test.jsonl").is_file():
        pytest.skip(f"real GSM8K data not found at {GSM8K_DIR} (copy it there to run these tests)")
    return GSM8K_DIR


@pytest.fixture(scope="module")
def gsm8k_rows(gsm8k_dir: Path) -> list[dict]:
    with (gsm8k_dir / "test.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(200), handle, strict=False)]


# ----- extraction: hand cases -------------------------------------------------------------------


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


# ----- extraction and grading on real GSM8K rows --------------------------------------------------


def test_hash_strict_extraction_reads_real_gold_answers(gsm8k_rows: list[dict]) -> None:
    task = GSM8K(extraction="strict", answer_format="hash")  # the rows' own "#### N" format
    for row in gsm8k_rows:
        gold = normalise_number(row["answer"].split("#### ")[-1])
        assert gold is not None and gold.lstrip("-").replace(".", "").isdigit()
        assert extract_strict_gsm8k(row["answer"]) == gold
        assert extract_last_number(row["answer"]) == gold  # the gold text ends with its answer
        example = _example(gold)
        assert task.is_correct(row["answer"], example)
        corrupted = row["answer"].rsplit("#### ", 1)[0] + f"#### {int(gold) + 1}"
        assert not task.is_correct(corrupted, example)


@pytest.mark.parametrize(("answer_format", "marker"), [("final_answer", "Final answer:"), ("hash", "####")])
def test_flexible_falls_back_to_last_number_only_when_strict_fails(gsm8k_rows: list[dict], answer_format: str,
                                                                   marker: str) -> None:
    strict = GSM8K(extraction="strict", answer_format=answer_format)
    flexible = GSM8K(extraction="flexible", answer_format=answer_format)
    row = gsm8k_rows[0]
    gold = normalise_number(row["answer"].split("#### ")[-1])
    no_marker = row["answer"].rsplit("#### ", 1)[0].rstrip() + f" So the answer is {gold}."
    assert strict.extract_answer(no_marker) is None
    assert flexible.extract_answer(no_marker) == gold
    # With a marker present, flexible must not be distracted by a later number.
    assert flexible.extract_answer(f"{marker} {gold}\nI used 3 steps.") == gold


# ----- GSM8K loading ------------------------------------------------------------------------------


def test_gsm8k_local_counts_and_targets(gsm8k_dir: Path) -> None:
    task = GSM8K(data_dir=str(gsm8k_dir))
    train, test = task.train_examples(), task.test_examples()
    assert (len(train), len(test), task.skipped_rows) == (7473, 1319, 0)
    assert test[0].answer == "18" and test[0].question.startswith("Janet")
    assert len({e.uid for e in train + test}) == len(train) + len(test)
    for example in test:
        assert "<<" not in example.target and example.target.endswith(f"\nFinal answer: {example.answer}")
        assert task.is_correct(example.target, example)
    prompt = task.format_prompt(test[0])
    assert prompt.startswith("Your task is") and prompt.endswith(f"Question: {test[0].question}\nSolution: ")


def test_gsm8k_limits_are_seeded_subsets(gsm8k_dir: Path) -> None:
    def uids(seed: int) -> tuple[list[str], list[str]]:
        task = GSM8K(data_dir=str(gsm8k_dir), train_limit=50, test_limit=20, seed=seed)
        return [e.uid for e in task.train_examples()], [e.uid for e in task.test_examples()]

    first, again, other = uids(0), uids(0), uids(1)
    assert (len(first[0]), len(first[1])) == (50, 20)
    assert first == again
    assert first[0] != other[0] and first[1] != other[1]
    assert first[1] != [f"gsm8k-test-{i}" for i in range(20)]  # a random subset, not the head


def test_gsm8k_malformed_rows_are_skipped_with_one_warning(tmp_path: Path) -> None:
    good = {"question": "What is 2 + 2?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"}
    lines = [json.dumps(good), json.dumps({"question": "No answer marker", "answer": "4"}), json.dumps(good)]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "test.jsonl").write_text(json.dumps(good) + "\n", encoding="utf-8")
    task = GSM8K(data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match=r"train\.jsonl.*line 2") as record:
        train = task.train_examples()
    assert len(record) == 1
    assert len(train) == 2 and task.skipped_rows == 1
    assert train[0].target == "2 + 2 = 4\nFinal answer: 4"


def test_gsm8k_missing_dir_or_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(LaserConfigError, match="nowhere.*train.jsonl"):
        GSM8K(data_dir=str(missing)).train_examples()
    (tmp_path / "train.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(LaserConfigError, match=r"test\.jsonl"):
        GSM8K(data_dir=str(tmp_path)).test_examples()


def test_gsm8k_hub_failure_suggests_local_data(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(LaserConfigError, match="openai/gsm8k.*task.data_dir=../shared/data/gsm8k") as info:
        GSM8K().train_examples()
    assert "\n" not in str(info.value)


def test_gsm8k_hub_rows_are_parsed_like_local_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    calls = []

    def fake_hub(hub_id, config, split):
        calls.append((hub_id, config, split))
        return [{"question": "Q?", "answer": "1,000 + 80\n#### 1,080"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    [example] = GSM8K(hub_config="main").test_examples()
    assert calls == [("openai/gsm8k", "main", "test")]
    assert example.answer == "1080" and example.target.endswith("Final answer: 1080")


@pytest.mark.parametrize("bad", ["loose", "STRICT", ""])
def test_gsm8k_bad_extraction_names_value_and_choices(bad: str) -> None:
    with pytest.raises(LaserConfigError, match=rf"'{bad}'.*strict.*flexible"):
        GSM8K(extraction=bad)


def test_gsm8k_evaluate_reports_both_variants() -> None:
    task = GSM8K(extraction="strict")
    examples = [_example("18"), _example("5")]
    metrics = task.evaluate(["Final answer: 18", "so it is 5"], examples)
    assert metrics == {"test/accuracy": 0.5, "test/accuracy_strict": 0.5, "test/accuracy_flexible": 1.0}


def test_gsm8k_prompt_template_override() -> None:
    task = GSM8K(prompt_templates={"final_answer": "Q: {question} {not a placeholder}\nFinal answer:"})
    assert task.format_prompt(_example("1")) == "Q: What? {not a placeholder}\nFinal answer:"
    with pytest.raises(LaserConfigError, match=r"prompt_templates\.final_answer.*question"):
        GSM8K(prompt_templates={"final_answer": "no placeholder, Final answer:"})


# ----- Arithmetic ---------------------------------------------------------------------------------


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


# ----- the task yamls -----------------------------------------------------------------------------


def test_task_yamls_instantiate() -> None:
    arithmetic = instantiate(OmegaConf.load(REPO_ROOT / "conf" / "task" / "arithmetic.yaml"))
    assert isinstance(arithmetic, Arithmetic) and arithmetic.categories == ("addition", "comparison")
    gsm8k = instantiate(OmegaConf.load(REPO_ROOT / "conf" / "task" / "gsm8k.yaml"))
    assert isinstance(gsm8k, GSM8K) and gsm8k.data_dir is None
    assert dict(OmegaConf.load(REPO_ROOT / "conf" / "task" / "gsm8k.yaml").prompt_templates) == GSM8K.prompt_templates
    assert gsm8k.answer_format == "final_answer"  # the yaml shows the defaults, verbatim


def _example(answer: str) -> Example:
    return Example(uid="x", question="What?", answer=answer)


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
