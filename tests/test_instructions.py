"""Instruction following: AlpacaEval / MT-Bench / WildChat loading, judges, win rates, the CLI, a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from laser.errors import LaserConfigError
from laser.evaluation.judges import LengthJudge, PairwiseLMJudge, RewardModelJudge
from laser.evaluation.winrate import main as winrate_main
from laser.rewards.base import RewardModel, ScoringBatch
from laser.tasks.instructions import Instructions, write_alpaca_eval_outputs
from laser.tasks.win_rate import Judge, win_rate

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
ALPACA = DATA_DIR / "alpaca_eval" / "gpt4_1106_preview_outputs.json"
MT_BENCH = DATA_DIR / "mt_bench" / "question.jsonl"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"benchmark data not found at {path} (see ../shared/data/README.md)")
    return path


def write_outputs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text(json.dumps([{"instruction": i, "output": o, "generator": path.stem} for i, o in pairs]))
    return path


class FirstPositionJudge(Judge):
    """Always prefers whatever is shown first: pure position bias."""

    def prefer(self, prompts, responses_a, responses_b):
        return [1.0] * len(prompts)


class LengthRM(RewardModel):
    """A fake RM: the score is the response's length in characters."""

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        return torch.tensor([float(len(r)) for r in batch.responses])


# ----- loading the real files --------------------------------------------------------------------


def test_alpaca_eval_has_805_instructions_with_references_and_categories():
    task = Instructions("alpaca_eval", data_file=str(require(ALPACA)), test_fraction=0.2, seed=0)
    train, test = task.train_examples(), task.test_examples()
    assert (len(train), len(test)) == (644, 161) and task.skipped_rows == 0 and task.name == "alpaca_eval"
    everything = train + test
    assert all(e.meta["reference"] and e.target == e.meta["reference"] and e.answer == "" for e in everything)
    assert {e.category for e in everything} == {"helpful_base", "koala", "oasst", "selfinstruct", "vicuna"}
    assert task.format_prompt(train[0]) == f"### Instruction:\n{train[0].question}\n\n### Response:\n"
    assert task.extract_answer("  an answer \n") == "an answer" and not task.is_correct("", train[0])


def test_mt_bench_has_80_first_turns_with_categories_and_no_references():
    task = Instructions("mt_bench", data_dir=str(require(MT_BENCH).parent), test_fraction=0.25)
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
    path = str(require(ALPACA))
    a, b = Instructions(data_file=path, seed=1), Instructions(data_file=path, seed=1)
    assert [e.uid for e in a.test_examples()] == [e.uid for e in b.test_examples()]
    assert not {e.question for e in a.train_examples()} & {e.question for e in a.test_examples()}
    other = Instructions(data_file=path, seed=2)
    assert [e.uid for e in other.test_examples()] != [e.uid for e in a.test_examples()]
    small = Instructions(data_file=path, seed=1, train_limit=16, test_limit=4)
    assert len(small.train_examples()) == 16 and len(small.test_examples()) == 4
    assert {e.uid for e in small.test_examples()} <= {e.uid for e in a.test_examples()}


def test_malformed_rows_are_skipped_counted_and_warned_once(tmp_path):
    rows = json.loads(require(ALPACA).read_text())[:10]
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


# ----- win rates and judges ----------------------------------------------------------------------


def test_length_judge_win_rates_by_hand(tmp_path):
    prompts = ["p1", "p2", "p3"]
    a, b = ["long answer", "same", "x"], ["short", "same", "much longer answer"]  # A longer, tie, B longer
    result = win_rate(prompts, a, b, LengthJudge())
    assert (result.rate, result.n, result.wins, result.ties, result.losses) == (0.5, 3, 1, 1, 1)
    assert result.se == pytest.approx(0.5 / math.sqrt(3))  # std of (1, 0.5, 0) is 0.5
    # Less symmetric: A longer twice, two ties -> (1 + 1 + 0.5 + 0.5) / 4 = 0.75.
    a, b = ["aaaa", "aaaa", "aa", "aa"], ["a", "a", "bb", "bb"]
    result = win_rate(["p"] * 4, a, b, LengthJudge())
    assert (result.rate, result.wins, result.ties, result.losses) == (0.75, 2, 2, 0)
    assert result.se == pytest.approx(math.sqrt((2 * 0.25**2 + 2 * 0.25**2) / 3) / 2)  # 0.1443
    assert win_rate(["p"] * 4, b, a, LengthJudge()).rate == 0.25  # swapped: 1 - 0.75


def test_both_orders_cancel_position_bias():
    prompts, a, b = ["p", "q"], ["good", "short"], ["bad answer", "much longer"]
    assert win_rate(prompts, a, b, FirstPositionJudge(), both_orders=False).rate == 1.0
    both = win_rate(prompts, a, b, FirstPositionJudge())
    assert (both.rate, both.ties, both.se) == (0.5, 2, 0.0)


def test_reward_model_judge_with_a_fake_rm():
    judge = RewardModelJudge(LengthRM())
    assert judge.prefer(["p"] * 3, ["abcd", "ab", "abc"], ["ab", "abcd", "abc"]) == [1.0, 0.0, 0.5]
    margin = RewardModelJudge(LengthRM(), tie_margin=2.0)
    assert margin.prefer(["p"] * 2, ["abcd", "abcdef"], ["ab", "a"]) == [0.5, 1.0]
    with pytest.raises(LaserConfigError, match="tie_margin"):
        RewardModelJudge(LengthRM(), tie_margin=-1)


def test_pairwise_lm_judge_on_a_tiny_llama(cache_dir):
    from laser.tasks.arithmetic import Arithmetic
    from laser.tiny import build_tiny_causal_lm

    folder = build_tiny_causal_lm(str(cache_dir), Arithmetic(num_train=50, num_test=10), vocab_size=300)
    prompts = ["What is 2 + 3?", "Is 7 larger than 4?", "What is 10 + 1?"]
    a, b = [" 5", " yes", " 11 is the sum"], [" 6", " no", " 12"]
    judge = PairwiseLMJudge(folder, batch_size=2, max_length=768)
    first = judge.prefer(prompts, a, b)
    assert len(first) == 3 and set(first) <= {0.0, 0.5, 1.0}
    assert judge.prefer(prompts, a, b) == first  # deterministic
    assert PairwiseLMJudge(folder, batch_size=1, max_length=768).prefer(prompts, a, b) == first  # batch-invariant
    long = judge.judge_prompts(["q"], ["word " * 500], ["b"])[0]
    assert len(judge.tokenizer(long)["input_ids"]) <= 768 and long.endswith("Answer A or B.\nAnswer:")
    with pytest.raises(LaserConfigError, match="does not exist"):
        PairwiseLMJudge(str(cache_dir / "missing"))
    with pytest.raises(LaserConfigError, match="too little room"):  # this tokenizer needs ~300 for the template
        PairwiseLMJudge(folder, max_length=256).prefer(["q"], ["a"], ["b"])


# ----- files, the command line, the task's evaluation --------------------------------------------


def test_cli_prints_the_win_rate_and_writes_json(tmp_path, capsys):
    a = write_outputs(tmp_path / "a.json", [("p1", "longer"), ("p2", "same"), ("p3", "x")])
    b = write_outputs(tmp_path / "b.json", [("p3", "xyz"), ("p1", "short"), ("p2", "same")])  # another order
    assert winrate_main([str(a), str(b), "--judge", "length", "--out", str(tmp_path / "r.json")]) == 0
    assert "0.5000 ± 0.2887" in capsys.readouterr().out
    result = json.loads((tmp_path / "r.json").read_text())
    assert (result["rate"], result["n"], result["wins"], result["judge"]) == (0.5, 3, 1, "length")
    c = write_outputs(tmp_path / "c.json", [("p1", "a"), ("p4", "b"), ("p5", "c")])
    assert winrate_main([str(a), str(c)]) == 2
    assert "4 instruction(s) appear in only one of them" in capsys.readouterr().err
    assert winrate_main([str(a), str(b), "--judge", "magic"]) == 2


def test_alpaca_eval_outputs_round_trip(tmp_path):
    task = Instructions(data_file=str(require(ALPACA)), test_limit=3)
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
    task = Instructions(data_file=str(require(ALPACA)), test_limit=2)
    assert task.evaluate([" ab ", "abcd"], task.test_examples()) == {"test/mean_length": 3.0}


def test_tiny_laser_run_on_alpaca_eval_reports_a_win_rate(make_config, tmp_path):
    from laser.run import run

    out = tmp_path / "run"
    cfg = make_config(["task=alpaca_eval", f"task.data_file={require(ALPACA)}", "task.train_limit=16",
                       "task.test_limit=4", "rm_pool=tiny_instruct", "policy.max_new_tokens=8",
                       "policy.warm_start.steps=5", "laser.nll_weight=0", "laser.num_samples=2",
                       "laser.pairs_per_prompt=1", "data.batch_size=2", "data.steps_per_iteration=2",
                       "laser.iterations=1", "data.group_by_category=false"], output_dir=out)
    results = run(cfg, out)
    saved = json.loads((out / "results.json").read_text())
    assert saved["primary_metric"] == "test/win_rate" and saved["task"] == "alpaca_eval"
    final = saved["final"]
    assert 0.0 <= final["test/win_rate"] <= 1.0 and final["test/wins"] + final["test/ties"] + final["test/losses"] == 4
    assert len(results["iterations"]) == 2 and sum(results["rm_selection_counts"].values()) == 2
    assert set(results["rm_selection_counts"]) == {"classifier_1", "classifier_2", "classifier_3"}


def test_each_evaluation_writes_alpaca_eval_model_outputs(make_config, tmp_path):
    data = ALPACA
    if not data.exists():
        pytest.skip(f"AlpacaEval data not found at {data}")
    out = tmp_path / "run"
    from laser.run import run

    run(make_config(["task=alpaca_eval", f"task.data_file={data}", "task.train_limit=8", "task.test_limit=3",
                     "rm_pool=tiny_instruct", "policy.max_new_tokens=4", "policy.warm_start.steps=2",
                     "laser.nll_weight=0", "laser.num_samples=2", "data.batch_size=2", "data.steps_per_iteration=1",
                     "laser.iterations=1", "data.group_by_category=false"], output_dir=out), out)
    for iteration in (0, 1):
        outputs = json.loads((out / "model_outputs" / f"iteration-{iteration}.json").read_text())
        assert len(outputs) == 3 and {"instruction", "output", "generator"} <= set(outputs[0])
