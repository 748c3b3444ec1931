"""Instruction following: AlpacaEval / MT-Bench / WildChat loading, evaluation and AlpacaEval's outputs files."""

from __future__ import annotations

import json

import pytest
from conftest import DATA_DIR, require_data

from laser.errors import LaserConfigError
from laser.evaluation.judges import LengthJudge
from laser.tasks.instructions import Instructions, write_alpaca_eval_outputs

ALPACA = DATA_DIR / "alpaca_eval" / "gpt4_1106_preview_outputs.json"
MT_BENCH = DATA_DIR / "mt_bench" / "question.jsonl"


def test_alpaca_eval_has_805_instructions_with_references_and_categories():
    task = Instructions("alpaca_eval", data_file=str(require_data(ALPACA)), test_fraction=0.2, seed=0)
    train, test = task.train_examples(), task.test_examples()
    assert (len(train), len(test)) == (644, 161) and task.skipped_rows == 0 and task.name == "alpaca_eval"
    everything = train + test
    assert all(e.meta["reference"] and e.target == e.meta["reference"] and e.answer == "" for e in everything)
    assert {e.category for e in everything} == {"helpful_base", "koala", "oasst", "selfinstruct", "vicuna"}
    assert task.format_prompt(train[0]) == f"### Instruction:\n{train[0].question}\n\n### Response:\n"
    assert task.extract_answer("  an answer \n") == "an answer" and not task.is_correct("", train[0])


def test_mt_bench_has_80_first_turns_with_categories_and_no_references():
    task = Instructions("mt_bench", data_dir=str(require_data(MT_BENCH).parent), test_fraction=0.25)
    everything = task.train_examples() + task.test_examples()
    assert len(everything) == 80 and len(task.test_examples()) == 20
    assert {e.category for e in everything} == {"writing", "roleplay", "reasoning", "math", "coding", "extraction",
                                                 "stem", "humanities"}
    first = next(json.loads(line) for line in MT_BENCH.read_text().splitlines())
    assert any(e.question == first["turns"][0] for e in everything)
    assert all(e.meta["reference"] == "" for e in everything)  # no baseline outputs: no win rate
    metrics = Instructions("mt_bench", data_file=str(MT_BENCH), judge=LengthJudge()).evaluate(
        ["a response"], task.test_examples()[:1])
    assert metrics == {"test/mean_length": 10.0}


def test_split_is_seeded_and_disjoint_and_limits_are_seeded_subsets():
    path = str(require_data(ALPACA))
    a, b = Instructions(data_file=path, seed=1), Instructions(data_file=path, seed=1)
    assert [e.uid for e in a.test_examples()] == [e.uid for e in b.test_examples()]
    assert not {e.question for e in a.train_examples()} & {e.question for e in a.test_examples()}
    other = Instructions(data_file=path, seed=2)
    assert [e.uid for e in other.test_examples()] != [e.uid for e in a.test_examples()]
    small = Instructions(data_file=path, seed=1, train_limit=16, test_limit=4)
    assert len(small.train_examples()) == 16 and len(small.test_examples()) == 4
    assert {e.uid for e in small.test_examples()} <= {e.uid for e in a.test_examples()}


def test_malformed_rows_are_skipped_counted_and_warned_once(tmp_path):
    rows = json.loads(require_data(ALPACA).read_text())[:10]
    rows[2] = {"instruction": ""}
    rows[5] = ["not", "an", "object"]
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(rows))
    task = Instructions(data_file=str(path), test_fraction=0.3)
    with pytest.warns(UserWarning, match=r"skipped 2 malformed alpaca_eval row\(s\) in .*outputs.json \(first at row 3\)"):
        examples = task.train_examples() + task.test_examples()
    assert len(examples) == 8 and task.skipped_rows == 2
    lines = tmp_path / "question.jsonl"
    lines.write_text('{"turns": ["Hi?"], "category": "writing"}\nnot json\n\n{"turns": [], "category": "x"}\n')
    mt = Instructions("mt_bench", data_file=str(lines))
    with pytest.warns(UserWarning, match="first at row 2"):
        assert len(mt.train_examples() + mt.test_examples()) == 1
    assert mt.skipped_rows == 2


def test_bad_configuration_is_one_line_errors(tmp_path):
    missing = tmp_path / "nowhere.json"
    with pytest.raises(LaserConfigError, match=str(missing)):
        Instructions(data_file=str(missing)).train_examples()
    with pytest.raises(LaserConfigError, match="task.source='alpaca' is not one of"):
        Instructions("alpaca", data_file="x")
    with pytest.raises(LaserConfigError, match="task.data_file"):
        Instructions("mt_bench")  # no hub default for MT-Bench
    with pytest.raises(LaserConfigError, match="test_fraction"):
        Instructions(data_file="x", test_fraction=1.0)


def test_wildchat_hub_rows_and_offline_failure(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(LaserConfigError, match="allenai/WildChat-1M.*task=alpaca_eval") as error:
        Instructions("wildchat").train_examples()
    assert "\n" not in str(error.value)

    class Stream(list):
        def take(self, n):
            return self[:n]

    def turn(text):
        return [{"role": "user", "content": text}, {"role": "assistant", "content": "..."}]

    rows = Stream([{"conversation": turn(f"question {i}"), "language": "English"} for i in range(9)]
                  + [{"conversation": turn("hola"), "language": "Spanish"}, {"conversation": turn("question 0")},
                     {"conversation": []}])
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, split, streaming: rows)
    task = Instructions("wildchat", test_fraction=0.3)
    with pytest.warns(UserWarning, match="first at row 12"):
        examples = task.train_examples() + task.test_examples()
    assert sorted(e.question for e in examples) == [f"question {i}" for i in range(9)]
    assert (task.skipped_rows, task.duplicate_rows) == (1, 1) and all(not e.meta["reference"] for e in examples)


def test_alpaca_eval_outputs_round_trip(tmp_path):
    task = Instructions(data_file=str(require_data(ALPACA)), test_limit=3)
    examples = task.test_examples()
    path = write_alpaca_eval_outputs(tmp_path / "out" / "model_outputs.json", ["r1", "r2", "r3"], examples, "tiny")
    rows = json.loads(path.read_text())
    assert rows == [{"instruction": e.question, "output": r, "generator": "tiny", "dataset": e.category}
                    for r, e in zip(["r1", "r2", "r3"], examples, strict=True)]
    # The written file serves as the reference of another run (matched by instruction).
    again = Instructions(data_file=str(ALPACA), test_limit=3, reference=str(path), judge=LengthJudge())
    assert [e.meta["reference"] for e in again.test_examples()] == ["r1", "r2", "r3"]
    metrics = again.evaluate(["longer than r1", "r2", ""], again.test_examples())
    assert metrics["test/win_rate"] == 0.5 and (metrics["test/wins"], metrics["test/ties"]) == (1.0, 1.0)
    assert metrics["test/mean_length"] == pytest.approx((14 + 2 + 0) / 3)


def test_evaluate_without_a_judge_reports_length_only():
    task = Instructions(data_file=str(require_data(ALPACA)), test_limit=2)
    assert task.evaluate([" ab ", "abcd"], task.test_examples()) == {"test/mean_length": 3.0}
