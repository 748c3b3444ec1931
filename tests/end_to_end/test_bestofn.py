"""Long-context best-of-n (`python -m laser.bestofn`): the pick, the consensus reward, and the whole loop on
real HotpotQA questions with the tiny policy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, compose_config, require_data

from laser.bestofn import pick_best, run
from laser.errors import LaserConfigError
from laser.tasks.base import Example


def test_pick_best_ignores_nan_and_breaks_ties_to_the_first() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.3], [float("nan"), 0.2, 0.2], [float("nan")] * 3])
    assert pick_best(scores) == [1, 1, 0]


def test_settle_grades_the_pick_and_rewards_the_chosen_rm() -> None:
    """One question by hand: the picked answer's F1, the oracle and first-sample F1, the consensus
    reward, and the bandit update (normalised reward, pairs picked-vs-others); an all-NaN row is skipped."""
    from laser.bestofn import Tally, settle
    from laser.selection.base import Selection, Selector
    from laser.selection.normalisers.quantile import QuantileNormaliser
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


@pytest.fixture(scope="module")
def hotpotqa_dir(tmp_path_factory) -> Path:
    """The real dev file's first 300 questions: a run reads every question of its file (~0.6 s for all
    7,405) and these runs need a few test questions and 16 for the tiny policy's tokenizer."""
    real = require_data("hotpotqa/dev_distractor.json")
    folder = tmp_path_factory.mktemp("hotpotqa")
    (folder / real.name).write_text(json.dumps(json.loads(real.read_text())[:300]))
    return folder


TINY_BESTOFN = ["policy.max_new_tokens=8", "policy.max_prompt_tokens=256", "policy.warm_start.steps=0",
                "num_samples=3", "batch_size=3", "task.limit=6", "task.train_limit=16"]


@pytest.mark.parametrize("bandit", ["linucb", "random", "score_ensemble"])
def test_bestofn_end_to_end(bandit: str, hotpotqa_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "run"
    cfg = compose_config(TINY_BESTOFN + [f"bandit={bandit}", f"task.data_dir={hotpotqa_dir}"], "bestofn", out, cache_dir)
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
    cfg = compose_config(TINY_BESTOFN + ["reward=gold", "task.limit=3", f"task.data_dir={hotpotqa_dir}"], "bestofn",
                         out, cache_dir)
    results = run(cfg, out)
    assert results["reward"] == {"signal": "gold", "uses_gold_labels": True}
    lines = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    assert [line["reward_raw"] for line in lines] == [line["f1"] for line in lines]  # gold reward = picked F1


@pytest.mark.parametrize(("override", "match"), [("reward=bogus", "reward="), ("num_samples=1", "num_samples")])
def test_bestofn_bad_knobs(override: str, match: str, tmp_path: Path, cache_dir: Path) -> None:
    cfg = compose_config([override], "bestofn", tmp_path / "run", cache_dir)
    with pytest.raises(LaserConfigError, match=match):
        run(cfg, tmp_path / "run")


def test_bestofn_cli_reports_config_errors_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "laser.bestofn", "reward=bogus", f"hydra.run.dir={tmp_path}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("laser: error: reward='bogus'")
