"""Long-context QA: LongBench's F1 maths by hand (`laser.tasks.qa_metrics`), the HotpotQA / LongBench task."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import require_data

from laser.bestofn import decision_reward
from laser.errors import LaserConfigError
from laser.tasks.base import Example
from laser.tasks.longcontext import LongContextQA, hotpotqa_passage
from laser.tasks.qa_metrics import best_f1, consensus_f1, exact_match, normalize_answer, qa_f1_score


@pytest.mark.parametrize(("text", "expected"), [
    ("The Eiffel Tower", "eiffel tower"),                 # article and case
    ("an apple a day", "apple day"),                      # all three articles
    ("theatre, anatomy and athens", "theatre anatomy and athens"),  # articles only as whole words
    ("U.S.A.!", "usa"),                                   # punctuation removed, not replaced by spaces
    ("  New\n York\t City  ", "new york city"),           # whitespace collapsed
    ("", ""),
])
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_qa_f1_score_by_hand() -> None:
    assert qa_f1_score("The Eiffel Tower.", "eiffel tower") == 1.0  # exact after normalisation
    assert qa_f1_score("Paris", "London") == 0.0  # no overlap
    assert qa_f1_score("", "London") == 0.0 and qa_f1_score("the", "a") == 0.0  # nothing left to compare
    # "big red dog" vs "red dog barks": 2 common of 3 each -> P = R = 2/3 -> F1 = 2/3.
    assert math.isclose(qa_f1_score("the big red dog", "red dog barks"), 2 / 3)
    # "red" vs "red dog": P = 1, R = 1/2 -> F1 = 2 * 0.5 / 1.5 = 2/3.
    assert math.isclose(qa_f1_score("red", "red dog"), 2 / 3)
    # Repeated tokens count once per gold occurrence: "dog dog" vs "dog": P = 1/2, R = 1 -> 2/3.
    assert math.isclose(qa_f1_score("dog dog", "dog"), 2 / 3)
    # "e b c d" vs "b x": 1 common, P = 1/4, R = 1/2 -> F1 = 2 * (1/8) / (3/4) = 1/3.
    assert math.isclose(qa_f1_score("e b c d", "b x"), 1 / 3)


def test_best_f1_and_exact_match_over_golds() -> None:
    golds = ["cat", "red dog", "The Red Dog Inn"]
    assert best_f1("red dog", golds) == 1.0
    assert math.isclose(best_f1("red", golds), 2 / 3)  # "red" vs "red dog" beats "red dog inn" (1/2)
    assert best_f1("blue", golds) == 0.0
    assert best_f1("anything", []) == 0.0
    assert exact_match("the red dog!", golds) and not exact_match("red", golds)


def test_consensus_reward_by_hand_for_three_samples() -> None:
    answers = ["red dog", "red cat", "blue dog"]
    # F1(red dog, red cat) = 1/2, F1(red dog, blue dog) = 1/2, F1(red cat, blue dog) = 0.
    assert math.isclose(consensus_f1(answers, 0), 0.5)
    assert math.isclose(consensus_f1(answers, 1), 0.25)
    assert math.isclose(consensus_f1(answers, 2), 0.25)
    assert consensus_f1(["only"], 0) == 0.0
    assert math.isclose(decision_reward("consensus", answers, 0, ["zzz"]), 0.5)  # labels are not read
    assert decision_reward("gold", answers, 2, ["Blue dog"]) == 1.0


@pytest.fixture(scope="module")
def hotpotqa_dir() -> Path:
    return require_data("hotpotqa/dev_distractor.json").parent


@pytest.fixture(scope="module")
def hotpotqa_all(hotpotqa_dir: Path) -> LongContextQA:
    return LongContextQA(source="hotpotqa", data_dir=str(hotpotqa_dir))


@pytest.fixture(scope="module")
def hotpotqa_raw(hotpotqa_dir: Path) -> list[dict]:
    return json.loads((hotpotqa_dir / "dev_distractor.json").read_text())


@pytest.fixture(scope="module")
def hotpotqa_sample_dir(hotpotqa_raw: list[dict], tmp_path_factory) -> Path:
    """The real file's first 300 questions: seeded subsets and grading need no more, and each task
    built on the whole file parses all 7,405 (~1 s)."""
    folder = tmp_path_factory.mktemp("hotpotqa")
    (folder / "dev_distractor.json").write_text(json.dumps(hotpotqa_raw[:300]))
    return folder


def test_hotpotqa_loads_every_row_with_titled_passages(hotpotqa_raw: list[dict], hotpotqa_all: LongContextQA) -> None:
    examples = hotpotqa_all.test_examples()
    assert len(examples) == 7405 and hotpotqa_all.skipped_rows == 0
    assert hotpotqa_all.train_examples() == []  # no train split by default
    for row, example in zip(hotpotqa_raw[:50], examples[:50], strict=True):
        passage = example.meta["passage"]
        positions = [passage.index(f"Title: {title}\n") for title, _ in row["context"]]
        assert positions == sorted(positions)  # every title, in file order
        assert passage in example.question and example.question.endswith(f"Question: {row['question'].strip()}\nAnswer:")
        assert example.answer == row["answer"] and example.meta["answers"] == [row["answer"]]
        assert example.category == "hotpotqa" and example.meta["type"] in ("bridge", "comparison")
    assert hotpotqa_all.format_prompt(examples[0]) == examples[0].question


def test_hotpotqa_limit_is_seeded_and_train_rows_are_disjoint(hotpotqa_sample_dir: Path) -> None:
    def uids(examples: list[Example]) -> list[str]:
        return [e.uid for e in examples]

    a = LongContextQA(data_dir=str(hotpotqa_sample_dir), limit=20, train_limit=5, seed=0)
    b = LongContextQA(data_dir=str(hotpotqa_sample_dir), limit=20, seed=0)
    c = LongContextQA(data_dir=str(hotpotqa_sample_dir), limit=20, seed=1)
    assert len(a.test_examples()) == 20 and uids(a.test_examples()) == uids(b.test_examples())
    assert uids(a.test_examples()) != uids(c.test_examples())
    assert len(a.train_examples()) == 5 and not set(uids(a.train_examples())) & set(uids(a.test_examples()))


def test_hotpotqa_grading_uses_the_first_line(hotpotqa_sample_dir: Path) -> None:
    task = LongContextQA(data_dir=str(hotpotqa_sample_dir), limit=2)
    first, second = task.test_examples()
    responses = [f"  {first.answer}\nand then more words", "no idea"]
    assert task.extract_answer(responses[0]) == first.answer
    metrics = task.evaluate(responses, [first, second])
    expected = best_f1("no idea", [second.answer]) / 2 + 0.5
    assert math.isclose(metrics["test/f1"], expected) and metrics["test/f1/hotpotqa"] == metrics["test/f1"]
    assert metrics["test/exact_match"] >= 0.5


def test_passage_joins_titled_paragraphs() -> None:
    passage = hotpotqa_passage([["A", ["One.", " Two."]], ["B", ["Three."]]])
    assert passage == "Title: A\nOne. Two.\n\nTitle: B\nThree."


def test_malformed_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    good = {"_id": "g", "question": "Q?", "answer": "yes", "context": [["T", ["S."]]]}
    rows = [good, {"question": "no answer", "context": [["T", ["S."]]]}, {**good, "context": "oops"}, 7]
    (tmp_path / "dev_distractor.json").write_text(json.dumps(rows))
    task = LongContextQA(data_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="skipped 3 malformed"):
        assert [e.uid for e in task.test_examples()] == ["hotpotqa-g"]
    assert task.skipped_rows == 3


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"source": "hotpotqa"}, "task.data_dir"),
    ({"source": "squad"}, "task.source"),
    ({"data_dir": "x", "limit": 0}, "task.limit"),
    ({"data_dir": "x", "prompt_template": "no placeholders"}, "task.prompt_template"),
])
def test_bad_task_settings_are_one_line_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(LaserConfigError, match=match) as error:
        LongContextQA(**kwargs)
    assert "\n" not in str(error.value)


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(LaserConfigError, match="dev_distractor.json"):
        LongContextQA(data_dir=str(tmp_path)).test_examples()


def test_longbench_rows_and_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    rows = {"qasper": [{"input": "What?", "context": "An article.", "answers": ["This", "that"], "_id": "1"},
                       {"input": "Bad", "context": "x", "answers": []}],
            "musique": [{"input": "Who?", "context": "Passage 1:\nX", "answers": ["X"], "_id": "2"}]}
    calls = []

    def fake_load(hub_id: str, subset: str, split: str):
        calls.append((hub_id, subset, split))
        return rows[subset]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    task = LongContextQA(source="longbench", subsets=["qasper", "musique"])
    with pytest.warns(UserWarning, match="skipped 1 malformed"):
        examples = task.test_examples()
    assert calls == [("THUDM/LongBench", "qasper", "test"), ("THUDM/LongBench", "musique", "test")]
    assert [e.category for e in examples] == ["qasper", "musique"]
    assert examples[0].answer == "This" and examples[0].meta["answers"] == ["This", "that"]
    assert examples[0].question.startswith("You are given a scientific article")  # LongBench's qasper prompt
    assert examples[1].question.startswith("Answer the question based on the given passages")
    assert task.skipped_rows == 1

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(LaserConfigError, match="task=hotpotqa") as error:
        LongContextQA(source="longbench", subsets=["hotpotqa"]).test_examples()
    assert "\n" not in str(error.value)
