"""Pairwise judges built from RMs and LMs, and the win-rate command line (`python -m laser.evaluation.winrate`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from laser.errors import LaserConfigError
from laser.evaluation.judges import PairwiseLMJudge, RewardModelJudge
from laser.evaluation.winrate import main as winrate_main
from laser.rewards.base import RewardModel, ScoringBatch


class LengthRM(RewardModel):
    """A fake RM: the score is the response's length in characters."""

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        return torch.tensor([float(len(r)) for r in batch.responses])


def write_outputs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text(json.dumps([{"instruction": i, "output": o, "generator": path.stem} for i, o in pairs]))
    return path


def test_reward_model_judge_with_a_fake_rm():
    judge = RewardModelJudge(LengthRM())
    assert judge.prefer(["p"] * 3, ["abcd", "ab", "abc"], ["ab", "abcd", "abc"]) == [1.0, 0.0, 0.5]
    margin = RewardModelJudge(LengthRM(), tie_margin=2.0)
    assert margin.prefer(["p"] * 2, ["abcd", "abcdef"], ["ab", "a"]) == [0.5, 1.0]
    with pytest.raises(LaserConfigError, match="tie_margin"):
        RewardModelJudge(LengthRM(), tie_margin=-1)
    # how reports name it: by its RM's model (here none: its name, else its class)
    assert judge.describe() == "rm:LengthRM" and margin.describe() == "rm:LengthRM (tie margin 2)"
    assert RewardModelJudge(LengthRM(name="judge_rm")).describe() == "rm:judge_rm"


def test_pairwise_lm_judge_on_a_tiny_llama(cache_dir):
    from laser.tasks.arithmetic import Arithmetic
    from laser.tiny import build_tiny_causal_lm

    folder = build_tiny_causal_lm(str(cache_dir), Arithmetic(num_train=50, num_test=10), vocab_size=300)
    prompts = ["What is 2 + 3?", "Is 7 larger than 4?", "What is 10 + 1?"]
    a, b = [" 5", " yes", " 11 is the sum"], [" 6", " no", " 12"]
    judge = PairwiseLMJudge(folder, batch_size=2, max_length=768)
    assert judge.describe() == f"lm:{folder}"
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
