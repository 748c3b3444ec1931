"""A tiny LASeR run on AlpacaEval: a win rate, and the outputs files for the official judge."""

from __future__ import annotations

import json

import pytest
from conftest import DATA_DIR, require_data

ALPACA = DATA_DIR / "alpaca_eval" / "gpt4_1106_preview_outputs.json"
# 8 training prompts and 2 SFT steps of 2 references each: every test here shares one tiny policy, cheaply
# (32 references of ~2,000 characters per step cost ~0.7 s a step).
BRIEF_POLICY = ["task.train_limit=8", "policy.warm_start.steps=2", "policy.warm_start.batch_size=2"]


def test_tiny_laser_run_on_alpaca_eval_reports_a_win_rate(make_config, tmp_path):
    from laser.run import run

    out = tmp_path / "run"
    cfg = make_config(["task=alpaca_eval", f"task.data_file={require_data(ALPACA)}", *BRIEF_POLICY,
                       "task.test_limit=4", "rm_pool=tiny_instruct", "policy.max_new_tokens=8",
                       "loss.nll_weight=0", "laser.num_samples=2",
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

    run(make_config(["task=alpaca_eval", f"task.data_file={data}", *BRIEF_POLICY, "task.test_limit=3",
                     "rm_pool=tiny_instruct", "policy.max_new_tokens=4", "loss.nll_weight=0", "laser.num_samples=2", "data.batch_size=2", "data.steps_per_iteration=1",
                     "laser.iterations=1", "data.group_by_category=false"], output_dir=out), out)
    for iteration in (0, 1):
        outputs = json.loads((out / "model_outputs" / f"iteration-{iteration}.json").read_text())
        assert len(outputs) == 3 and {"instruction", "output", "generator"} <= set(outputs[0])


def test_a_tiny_sweep_reports_laser_head_to_head_against_a_baseline(make_config, tmp_path):
    """Two real jobs (LASeR and random RM choice, same seed): the report pairs their test responses by
    prompt and judges them in both orders, and against LASeR's own responses before training."""
    from laser.evaluation.judges import LengthJudge
    from laser.report.jobs import load_sweep
    from laser.report.writing import sweep_head_to_head
    from laser.run import run

    data = require_data(ALPACA.relative_to(DATA_DIR))
    for number, bandit in enumerate(("linucb", "random")):
        out = tmp_path / "sweep" / str(number)
        run(make_config([f"bandit={bandit}", "task=alpaca_eval", f"task.data_file={data}", *BRIEF_POLICY,
                         "task.test_limit=3", "rm_pool=tiny_instruct", "policy.max_new_tokens=6",
                         "loss.nll_weight=0", "laser.num_samples=2",
                         "data.batch_size=2", "data.steps_per_iteration=1", "laser.iterations=1",
                         "data.group_by_category=false"], output_dir=out), out)
    jobs, _ = load_sweep(tmp_path / "sweep")
    result = sweep_head_to_head(jobs, LengthJudge())
    cells = result["tasks"]["alpaca_eval"]["linucb"]
    assert result["judge"] == "length" and set(cells) == {"random", "before preference training (SFT: 2 steps)"}
    assert all(c["prompts"] == 3 and c["seeds"] == [0] and c["wins"] + c["ties"] + c["losses"] == 3
               and 0.0 <= c["win_rate"].mean <= 1.0 for c in cells.values())
