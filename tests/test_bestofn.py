"""Long-context best-of-n: F1 maths by hand, the HotpotQA/LongBench task, overlap RMs, the consensus
reward, and the whole `laser.bestofn` loop on real HotpotQA questions with the tiny policy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from omegaconf import DictConfig, OmegaConf

from laser.bestofn import decision_reward, pick_best, run
from laser.errors import LaserConfigError
from laser.rewards.base import ScoringBatch
from laser.rewards.overlap import PassageOverlapRM, QuestionOverlapRM
from laser.tasks.base import Example
from laser.tasks.longcontext import LongContextQA, hotpotqa_passage
from laser.tasks.qa_metrics import best_f1, consensus_f1, exact_match, normalize_answer, qa_f1_score

ROOT = Path(__file__).resolve().parents[1]
HOTPOTQA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hotpotqa"


# ----- normalisation and F1 (LongBench's metric) ---------------------------------------------------


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


def test_pick_best_ignores_nan_and_breaks_ties_to_the_first() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.3], [float("nan"), 0.2, 0.2], [float("nan")] * 3])
    assert pick_best(scores) == [1, 1, 0]


def test_settle_grades_the_pick_and_rewards_the_chosen_rm() -> None:
    """One question by hand: the picked answer's F1, the oracle and first-sample F1, the consensus
    reward, and the bandit update (normalised reward, pairs picked-vs-others); an all-NaN row is skipped."""
    from laser.bestofn import Tally, settle
    from laser.selection.base import Selection, Selector
    from laser.selection.normaliser import QuantileNormaliser
    from laser.step.decisions import Decision

    class Recorder(Selector):
        updates: list = []

        def select(self, context: torch.Tensor) -> Selection:
            return Selection(arms=(1,))

        def update(self, selection, context, reward, feedback=None) -> None:
            self.updates.append((selection.arms, reward, feedback.pairs))

    class Names:
        names = ["rm_a", "rm_b"]

    selector = Recorder(num_arms=2)
    parts = {"selector": selector, "normaliser": QuantileNormaliser(), "pool": Names()}
    gold = Example(uid="q0", question="p", answer="red dog", category="hotpotqa", meta={"answers": ["red dog", "a dog"]})
    batch = [gold, Example(uid="q1", question="p", answer="x", category="hotpotqa")]
    scores = torch.tensor([[0.1, 0.9, 0.5], [float("nan")] * 3])
    outcome = {"answers": ["blue cat", "Red dog.", "red", "x", "y", "z"], "scores": scores,
               "per_arm": {1: scores}, "picks": pick_best(scores)}
    decisions = [Decision([0], torch.zeros(2), Selection((1,))), Decision([1], torch.zeros(2), Selection((1,)))]
    tally = Tally()
    first, second = (settle(parts, "consensus", d, outcome, batch, 3, tally) for d in decisions)
    # consensus of "Red dog." = mean(F1 with "blue cat" = 0, F1 with "red" = 2/3) = 1/3.
    assert math.isclose(first["reward_raw"], 1 / 3) and first["reward_normalised"] == 0.5  # no history yet
    assert first["arm_name"] == "rm_b" and first["answer"] == "Red dog." and first["f1"] == 1.0
    assert tally.rows[0] == {"category": "hotpotqa", "f1": 1.0, "oracle_f1": 1.0, "first_f1": 0.0}
    assert selector.updates == [((1,), 0.5, [(0, 1, 0), (0, 1, 2)])]  # the NaN row taught nothing
    assert second["reward_raw"] is None and tally.skipped_updates == 1
    assert tally.rows[1]["f1"] == 1.0  # no finite score: sample 0 ("x") is the answer
    assert tally.selection_counts == {"rm_b": 2}


# ----- overlap RMs ---------------------------------------------------------------------------------


def _example(passage: str, question: str) -> Example:
    return Example(uid="x", question="prompt", answer="a", meta={"passage": passage, "question": question})


def test_passage_and_question_overlap_rms_by_hand() -> None:
    example = _example("Paris is the capital of France.", "Which is older, Paris or Rome?")
    answers = ["Paris, France", "The Paris of Spain", "", "Rome"]
    batch = ScoringBatch(prompts=["p"] * 4, responses=answers, examples=[example] * 4)
    passage = PassageOverlapRM(length_penalty=0.01).score(batch)
    # paris+france both grounded: 1 - 0.02; "paris of spain": 2/3 grounded - 0.03; empty: 0; rome: 0 - 0.01.
    assert torch.allclose(passage, torch.tensor([0.98, 2 / 3 - 0.03, 0.0, -0.01]))
    question = QuestionOverlapRM(length_penalty=0.0).score(batch)
    assert torch.allclose(question, torch.tensor([0.5, 1 / 3, 0.0, 1.0]))
    # Without meta the prompt is the reference.
    bare = Example(uid="y", question="q", answer="a")
    fallback = PassageOverlapRM(length_penalty=0.0).score(
        ScoringBatch(prompts=["Rome is old"], responses=["rome"], examples=[bare]))
    assert fallback.tolist() == [1.0]
    with pytest.raises(LaserConfigError, match="length_penalty"):
        PassageOverlapRM(length_penalty=-1)


# ----- the task on the real HotpotQA file ----------------------------------------------------------


@pytest.fixture(scope="module")
def hotpotqa_dir() -> Path:
    if not (HOTPOTQA / "dev_distractor.json").exists():
        pytest.skip(f"real HotpotQA data not found at {HOTPOTQA} (see ../shared/data/README.md)")
    return HOTPOTQA


@pytest.fixture(scope="module")
def hotpotqa_all(hotpotqa_dir: Path) -> LongContextQA:
    return LongContextQA(source="hotpotqa", data_dir=str(hotpotqa_dir))


def test_hotpotqa_loads_every_row_with_titled_passages(hotpotqa_dir: Path, hotpotqa_all: LongContextQA) -> None:
    examples = hotpotqa_all.test_examples()
    assert len(examples) == 7405 and hotpotqa_all.skipped_rows == 0
    assert hotpotqa_all.train_examples() == []  # no train split by default
    raw = json.loads((hotpotqa_dir / "dev_distractor.json").read_text())
    for row, example in zip(raw[:50], examples[:50], strict=True):
        passage = example.meta["passage"]
        positions = [passage.index(f"Title: {title}\n") for title, _ in row["context"]]
        assert positions == sorted(positions)  # every title, in file order
        assert passage in example.question and example.question.endswith(f"Question: {row['question'].strip()}\nAnswer:")
        assert example.answer == row["answer"] and example.meta["answers"] == [row["answer"]]
        assert example.category == "hotpotqa" and example.meta["type"] in ("bridge", "comparison")
    assert hotpotqa_all.format_prompt(examples[0]) == examples[0].question


def test_hotpotqa_limit_is_seeded_and_train_rows_are_disjoint(hotpotqa_dir: Path) -> None:
    def uids(examples: list[Example]) -> list[str]:
        return [e.uid for e in examples]

    a = LongContextQA(data_dir=str(hotpotqa_dir), limit=20, train_limit=5, seed=0)
    b = LongContextQA(data_dir=str(hotpotqa_dir), limit=20, seed=0)
    c = LongContextQA(data_dir=str(hotpotqa_dir), limit=20, seed=1)
    assert len(a.test_examples()) == 20 and uids(a.test_examples()) == uids(b.test_examples())
    assert uids(a.test_examples()) != uids(c.test_examples())
    assert len(a.train_examples()) == 5 and not set(uids(a.train_examples())) & set(uids(a.test_examples()))


def test_hotpotqa_grading_uses_the_first_line(hotpotqa_dir: Path) -> None:
    task = LongContextQA(data_dir=str(hotpotqa_dir), limit=2)
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


# ----- the best-of-n loop, end to end --------------------------------------------------------------


def compose_bestofn(output_dir: Path, overrides: list[str], cache_dir: Path) -> DictConfig:
    """conf/bestofn.yaml as `python -m laser.bestofn` composes it."""
    return compose_config(output_dir, overrides, cache_dir, config_name="bestofn")


TINY_BESTOFN = ["policy.max_new_tokens=8", "policy.max_prompt_tokens=256", "policy.warm_start.steps=0",
                "num_samples=3", "batch_size=3", "task.limit=6", "task.train_limit=16"]


@pytest.mark.parametrize("bandit", ["linucb", "random", "score_ensemble"])
def test_bestofn_end_to_end(bandit: str, hotpotqa_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "run"
    cfg = compose_bestofn(out, TINY_BESTOFN + [f"bandit={bandit}", f"task.data_dir={hotpotqa_dir}"], cache_dir)
    payload = run(cfg, out)

    results = json.loads((out / "results.json").read_text())
    final = results["final"]
    assert results["complete"] and results["task"] == "hotpotqa" and results["primary_metric"] == "test/f1"
    assert results["method"] == bandit and results["num_questions"] == 6
    assert 0.0 <= final["test/f1"] <= 1.0 and final["test/f1/hotpotqa"] == final["test/f1"]
    assert final["test/oracle_f1"] >= final["test/f1"] and final["test/oracle_f1"] >= final["test/first_sample_f1"]
    assert results["reward"] == {"signal": "consensus", "uses_gold_labels": False}
    assert results["config"]["bandit"]["granularity"] == "instance"  # forced: one decision per question
    lines = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and [line["step"] for line in lines] == [0, 0, 0, 1, 1, 1]
    assert all(0.0 <= line["reward_normalised"] <= 1.0 and 0.0 <= line["f1"] <= 1.0 for line in lines)
    # Only chosen RMs ran: each RM scored exactly num_samples answers per question that chose it.
    counts, calls = results["rm_selection_counts"], results["rm_calls"]
    assert all(calls[name] == 3 * counts[name] for name in calls)
    if bandit == "score_ensemble":
        assert all(calls[name] == 18 for name in calls)
    else:
        assert sum(calls.values()) == 18 and sum(counts.values()) == 6
    assert payload["final"] == final
    before, after = results["iterations"]  # what laser.report reads: 0 = first sample, 1 = best-of-n
    assert before["test/f1"] == final["test/first_sample_f1"] and after["test/f1"] == final["test/f1"]


def test_bestofn_gold_reward_is_flagged(hotpotqa_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "run"
    cfg = compose_bestofn(out, TINY_BESTOFN + ["reward=gold", "task.limit=3", f"task.data_dir={hotpotqa_dir}"],
                          cache_dir)
    results = run(cfg, out)
    assert results["reward"] == {"signal": "gold", "uses_gold_labels": True}
    lines = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    assert [line["reward_raw"] for line in lines] == [line["f1"] for line in lines]  # gold reward = picked F1


@pytest.mark.parametrize(("override", "match"), [("reward=bogus", "reward="), ("num_samples=1", "num_samples")])
def test_bestofn_bad_knobs(override: str, match: str, tmp_path: Path, cache_dir: Path) -> None:
    cfg = compose_bestofn(tmp_path / "run", [override], cache_dir)
    with pytest.raises(LaserConfigError, match=match):
        run(cfg, tmp_path / "run")


def test_bestofn_cli_reports_config_errors_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "laser.bestofn", "reward=bogus", f"hydra.run.dir={tmp_path}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("laser: error: reward='bogus'")


def test_task_yamls_compose() -> None:
    for name in ("hotpotqa", "longbench"):
        node = OmegaConf.load(ROOT / "conf" / "task" / f"{name}.yaml")
        assert node._target_ == "laser.tasks.longcontext.LongContextQA" and node.source == name
