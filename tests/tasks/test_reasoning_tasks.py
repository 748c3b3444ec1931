"""The reasoning tasks (GSM8K, StrategyQA, MMLU): loading real rows from ../shared/data, splits,
extraction on real rows, grading, hub paths and errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import DATA_DIR

from laser.errors import LaserConfigError
from laser.tasks.base import Example
from laser.tasks.extraction import (
    extract_last_number,
    extract_strict_gsm8k,
    normalise_number,
)
from laser.tasks.gsm8k import GSM8K
from laser.tasks.mmlu import MMLU
from laser.tasks.strategyqa import StrategyQA

GSM8K_DIR = DATA_DIR / "gsm8k"


@pytest.fixture(scope="module")
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "test.jsonl").is_file():
        pytest.skip(f"real GSM8K data not found at {GSM8K_DIR} (copy it there to run these tests)")
    return GSM8K_DIR


@pytest.fixture(scope="module")
def gsm8k_rows(gsm8k_dir: Path) -> list[dict]:
    with (gsm8k_dir / "test.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for _, line in zip(range(200), handle, strict=False)]


def _data_dir(name: str, marker: str) -> Path:
    folder = DATA_DIR / name
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


# ---- GSM8K -----------------------------------------------------------------------------------------------


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


def _example(answer: str) -> Example:
    return Example(uid="x", question="What?", answer=answer)


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


# ---- StrategyQA ------------------------------------------------------------------------------------------


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


# ---- MMLU ------------------------------------------------------------------------------------------------


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

    first, again, other_seed = uids(0), uids(0), uids(1)
    assert len(first) == 40 and first == again and first != other_seed


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
