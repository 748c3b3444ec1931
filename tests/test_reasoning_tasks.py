"""StrategyQA and MMLU: loading real rows from ../shared/data, splits, extraction, grading, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra.utils import instantiate
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import OmegaConf

from laser.errors import LaserConfigError
from laser.tasks.base import Example
from laser.tasks.extraction import (
    extract_choice_letter,
    extract_strict_choice,
    extract_strict_final_answer,
    extract_strict_yes_no,
)
from laser.tasks.mmlu import MMLU
from laser.tasks.strategyqa import StrategyQA

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONF_TASK = Path(__file__).resolve().parents[1] / "conf" / "task"
NEW_EXTRACTORS = [extract_strict_final_answer, extract_strict_yes_no, extract_strict_choice, extract_choice_letter]


def _data_dir(name: str, marker: str) -> Path:
    folder = SHARED_DATA / name
    if not (folder / marker).exists():
        pytest.skip(f"real {name} data not found at {folder} (copy it there to run these tests)")
    return folder


@pytest.fixture(scope="module")
def strategyqa_dir() -> Path:
    return _data_dir("strategyqa", "dev.json")


@pytest.fixture(scope="module")
def mmlu_dir() -> Path:
    return _data_dir("mmlu", "test")


@pytest.fixture(scope="module")
def mmlu(mmlu_dir: Path) -> MMLU:
    return MMLU(data_dir=str(mmlu_dir))  # loaded once: 14,042 rows


# ----- the new extractors --------------------------------------------------------------------------


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


# ----- StrategyQA --------------------------------------------------------------------------------


def test_strategyqa_local_counts_golds_and_targets(strategyqa_dir: Path) -> None:
    task = StrategyQA(data_dir=str(strategyqa_dir))
    train, test = task.train_examples(), task.test_examples()
    assert (len(train), len(test), task.skipped_rows) == (2061, 229, 0)
    raw = json.loads((strategyqa_dir / "dev.json").read_text(encoding="utf-8"))
    for example, row in zip(test, raw, strict=True):
        assert example.answer == ("yes" if row["answer"] else "no") and example.meta["qid"] == row["qid"]
        assert example.target.endswith(f"\nFinal answer: {example.answer}")
        assert row["facts"][0].strip() in example.target
        assert task.is_correct(example.target, example)
    assert {e.answer for e in train} == {"yes", "no"}
    prompt = task.format_prompt(test[0])
    assert prompt.startswith("Your task is") and prompt.endswith(f"Question: {test[0].question}\nSolution: ")


@pytest.mark.parametrize(
    ("response", "flexible", "strict"),
    [
        ("Albany, GA is smaller... Final answer: No.", "no", "no"),
        ("True", "yes", None),
        ("Yes, it seems so at first, but no.", "no", None),
        ("Final answer: yes\nHowever, no one knows.", "yes", "yes"),  # the Final answer line wins
        ("I cannot tell.", None, None),
    ],
)
def test_strategyqa_extraction(response: str, flexible: str | None, strict: str | None) -> None:
    assert StrategyQA().extract_answer(response) == flexible
    assert StrategyQA(extraction="strict").extract_answer(response) == strict


def test_strategyqa_evaluate_reports_both_variants() -> None:
    examples = [Example("a", "Q?", "yes"), Example("b", "Q?", "no"), Example("c", "Q?", "no")]
    responses = ["Final answer: yes", "no", "Final answer: yes"]
    metrics = StrategyQA(extraction="strict").evaluate(responses, examples)
    assert metrics == {"test/accuracy": 1 / 3, "test/accuracy_strict": 1 / 3, "test/accuracy_flexible": 2 / 3}


def test_strategyqa_fewshot_is_fixed_and_never_shows_the_own_answer(strategyqa_dir: Path) -> None:
    task = StrategyQA(data_dir=str(strategyqa_dir), num_fewshot=2)
    test = task.test_examples()[0]
    prompt = task.format_prompt(test)
    assert prompt.count("Question: ") == 3 and prompt.endswith(StrategyQA().format_prompt(test))
    assert prompt == StrategyQA(data_dir=str(strategyqa_dir), num_fewshot=2).format_prompt(test)
    for shot in task._shots:  # a training prompt whose question is a shot gets another shot instead
        own = task.format_prompt(shot)
        assert own.count("Question: ") == 3 and own.count(shot.target) == 0


def test_strategyqa_malformed_row_skipped_and_missing_dir(tmp_path: Path) -> None:
    rows = [{"question": "Is ice cold?", "answer": True, "facts": ["Ice is frozen water"]}, {"question": "?"}]
    (tmp_path / "train.json").write_text(json.dumps(rows), encoding="utf-8")
    (tmp_path / "dev.json").write_text(json.dumps(rows[:1]), encoding="utf-8")
    task = StrategyQA(data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match=r"train\.json.*row 2"):
        assert [e.target for e in task.train_examples()] == ["Ice is frozen water.\nFinal answer: yes"]
    assert task.skipped_rows == 1
    with pytest.raises(LaserConfigError, match="nowhere.*train.json"):
        StrategyQA(data_dir=str(tmp_path / "nowhere")).test_examples()


def test_strategyqa_hub_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network\nsecond line")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(LaserConfigError, match="ChilleD/StrategyQA.*data_dir=../shared/data/strategyqa") as info:
        StrategyQA().train_examples()
    assert "\n" not in str(info.value)
    rows = [{"question": f"Q{i}?", "answer": i % 2 == 0, "facts": "One fact."} for i in range(50)]
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id: {"test": rows})  # one split only
    task = StrategyQA(hub_id="someone/strategy-qa", seed=3)
    train, test = task.train_examples(), task.test_examples()
    assert (len(train), len(test)) == (40, 10) and not {e.uid for e in train} & {e.uid for e in test}
    assert [e.uid for e in test] == [e.uid for e in StrategyQA(hub_id="x", seed=3).test_examples()]
    assert test[0].target.startswith("One fact.\nFinal answer:")


# ----- MMLU --------------------------------------------------------------------------------------


def test_mmlu_counts_subjects_and_golds(mmlu: MMLU, mmlu_dir: Path) -> None:
    train, test = mmlu.train_examples(), mmlu.test_examples()
    assert len(train) + len(test) == 14042 and mmlu.skipped_rows == 0
    assert len(mmlu.categories) == 57 and {e.category for e in test} == set(mmlu.categories)
    for path in sorted((mmlu_dir / "test").glob("*.csv"))[:5]:  # checked against the raw CSV rows
        subject = path.stem.removesuffix("_test")
        with path.open(encoding="utf-8", newline="") as handle:
            raw = {f"mmlu-test-{subject}-{i}": row for i, row in enumerate(csv.DictReader(handle))}
        for example in (e for e in train + test if e.category == subject):
            row = raw.pop(example.uid)
            assert example.answer == "ABCD"[int(row["answer"])]
            assert example.meta["choices"][int(row["answer"])] == row[f"choice{row['answer']}"].strip()
            assert mmlu.is_correct(example.target, example)
        assert raw == {}  # every row landed in exactly one of the two parts


def test_mmlu_split_is_disjoint_and_stratified(mmlu: MMLU) -> None:
    train, test = mmlu.train_examples(), mmlu.test_examples()
    assert not {e.uid for e in train} & {e.uid for e in test}
    for subject in mmlu.categories:
        n_train = sum(e.category == subject for e in train)
        n_test = sum(e.category == subject for e in test)
        assert abs(n_train - 0.5 * (n_train + n_test)) <= 1
    restricted = MMLU(data_dir=mmlu.data_dir, subjects="anatomy", train_fraction=0.2)
    n_train, n_test = len(restricted.train_examples()), len(restricted.test_examples())
    assert (n_train, n_test) == (27, 108) and restricted.categories == ("anatomy",)


def test_mmlu_limits_are_seeded(mmlu_dir: Path) -> None:
    def uids(seed: int) -> list[str]:
        subjects = ["anatomy", "virology"]
        task = MMLU(data_dir=str(mmlu_dir), subjects=subjects, train_limit=30, test_limit=10, seed=seed)
        return [e.uid for e in task.train_examples() + task.test_examples()]

    assert len(uids(0)) == 40 and uids(0) == uids(0) and uids(0) != uids(1)


@pytest.mark.parametrize(
    ("response", "flexible", "strict"),
    [
        ("(C)", "C", None),
        ("The answer is B.", "B", None),
        ("Final answer: D", "D", "D"),
        ("A and B are wrong, Final answer: C", "C", "C"),
        ("no idea", None, None),
    ],
)
def test_mmlu_extraction(response: str, flexible: str | None, strict: str | None) -> None:
    assert MMLU().extract_answer(response) == flexible
    assert MMLU(extraction="strict").extract_answer(response) == strict


def test_mmlu_evaluate_micro_macro_and_variants() -> None:
    examples = [Example("1", "Q", "A", category="law"), Example("2", "Q", "B", category="law"),
                Example("3", "Q", "C", category="virology")]
    metrics = MMLU().evaluate(["Final answer: A", "Final answer: C", "(C)"], examples)
    assert metrics == pytest.approx({
        "test/accuracy": 2 / 3, "test/accuracy/law": 0.5, "test/accuracy/virology": 1.0,
        "test/accuracy_macro": 0.75,  # (0.5 + 1.0) / 2, not the micro 2/3
        "test/accuracy_strict": 1 / 3, "test/accuracy_flexible": 2 / 3,
    })


def test_mmlu_fewshot_uses_dev_rows_of_the_same_subject(mmlu_dir: Path) -> None:
    task = MMLU(data_dir=str(mmlu_dir), subjects=["anatomy"], num_fewshot=2)
    example = task.test_examples()[0]
    with (mmlu_dir / "dev" / "anatomy_dev.csv").open(encoding="utf-8", newline="") as handle:
        first_dev = next(csv.DictReader(handle))
    prompt = task.format_prompt(example)
    assert prompt.startswith("Your task is") and prompt.count("Question: ") == 3
    assert f"Question: {first_dev['question']}\nA. " in prompt.split("\n\n")[0]  # the first shot
    assert prompt.endswith(MMLU().format_prompt(example))


def test_mmlu_unknown_subject(mmlu_dir: Path) -> None:
    with pytest.raises(LaserConfigError, match=r"'astronmy'.*did you mean 'astronomy'.*57 in all"):
        MMLU(data_dir=str(mmlu_dir), subjects=["astronmy"]).train_examples()


def test_mmlu_malformed_row_skipped_and_missing_dir(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    lines = ["question,choice0,choice1,choice2,choice3,answer", "1+1?,1,2,3,4,1", "bad,1,2,3,4,7", "4?,4,5,6,7,0"]
    (tmp_path / "test" / "maths_test.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = MMLU(data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match=r"maths_test\.csv.*line 3") as record:
        examples = task.train_examples() + task.test_examples()
    assert len(record) == 1 and task.skipped_rows == 1
    assert sorted(e.answer for e in examples) == ["A", "B"] and task.categories == ("maths",)
    with pytest.raises(LaserConfigError, match="nowhere"):
        MMLU(data_dir=str(tmp_path / "nowhere")).test_examples()


def test_mmlu_hub_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args, **kwargs):
        raise OSError("offline\nmore")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(LaserConfigError, match="cais/mmlu.*task.data_dir=../shared/data/mmlu") as info:
        MMLU().test_examples()
    assert "\n" not in str(info.value)
    rows = [{"question": f"Q{i}", "subject": "law", "choices": list("wxyz"), "answer": i % 4} for i in range(8)]
    calls = []  # the real cais/mmlu answer is a class index (int), as here
    monkeypatch.setattr(datasets, "load_dataset", lambda *a: calls.append(a) or {"test": rows, "dev": rows})
    task = MMLU(num_fewshot=1)
    examples = task.train_examples() + task.test_examples()
    assert calls == [("cais/mmlu", "all")] and len(examples) == 8 and task.categories == ("law",)
    assert "Question: Q0\nA. w\nB. x\nC. y\nD. z\nSolution: " in task.format_prompt(examples[0])


def test_config_errors_are_one_liners() -> None:
    for bad in ({"num_fewshot": 6}, {"train_fraction": 1.0}, {"subjects": []}, {"extraction": "loose"},
                {"answer_format": "plain"}):
        with pytest.raises(LaserConfigError, match=next(iter(bad))):
            MMLU(**bad)
    for bad in ({"test_fraction": 0}, {"num_fewshot": -1}, {"train_limit": 0},
                {"prompt_templates": {"hash": "Q: {question}"}}):
        with pytest.raises(LaserConfigError, match=next(iter(bad))):
            StrategyQA(**bad)


def test_task_yamls_instantiate_with_the_default_prompts() -> None:
    for cls in (StrategyQA, MMLU):
        task = instantiate(OmegaConf.load(CONF_TASK / f"{cls.name}.yaml"))
        yaml_templates = dict(OmegaConf.load(CONF_TASK / f"{cls.name}.yaml").prompt_templates)
        assert isinstance(task, cls) and task.data_dir is None and yaml_templates == cls.prompt_templates
