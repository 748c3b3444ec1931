"""A whole (shrunk) LASeR run: its files, stop-and-resume, offline runs on each task's local files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BRIEF_WARM_START, require_data
from omegaconf import OmegaConf

from laser.run import run

RESULT_KEYS = {"seed", "wall_seconds", "config", "final", "iterations", "rm_selection_counts", "rm_calls"}
ITERATION_KEYS = {"iteration", "test/accuracy", "train/loss", "rm_selection_counts", "rm_calls",
                  "generated_tokens", "wall_seconds"}


SELECTION_KEYS = {"step", "iteration", "arm", "arm_name", "reward_raw", "reward_normalised", "categories"}


def _read(output_dir: Path):
    results = json.loads((output_dir / "results.json").read_text())
    selections = [json.loads(line) for line in (output_dir / "selections.jsonl").read_text().splitlines()]
    return results, selections


def test_default_run_writes_results_selections_checkpoints_and_csv(make_config, tmp_path):
    cfg = make_config()
    out = tmp_path / "run"
    payload = run(cfg, out)
    results, selections = _read(out)
    assert results == json.loads(json.dumps(payload))
    assert RESULT_KEYS <= set(results) and results["complete"] is True
    assert set(results["environment"]) >= {"git", "python", "packages", "platform", "cpu", "torch_threads", "cuda"}
    # Shrunk by +debug=tiny (conf/debug/tiny.yaml): 2 iterations of 6 steps, evaluated on 40 test examples.
    assert [r["iteration"] for r in results["iterations"]] == [0, 1, 2]
    assert results["data"]["steps_per_iteration"] == 6 and results["config"]["data"]["eval_limit"] == 40
    for record in results["iterations"]:
        assert ITERATION_KEYS <= set(record)
        assert set(record["rm_selection_counts"]) == {"arith_judge", "compare_judge", "noise"}
    assert results["final"]["test/accuracy"] == results["iterations"][-1]["test/accuracy"]
    assert 0.0 <= results["final"]["test/accuracy"] <= 1.0
    # One selection line per step; the per-iteration counts add up to the run's.
    assert len(selections) == 12 and [s["step"] for s in selections] == list(range(12))
    assert all(SELECTION_KEYS <= set(s) for s in selections)
    assert sum(results["rm_selection_counts"].values()) == 12
    assert all(sum(s["categories"].values()) == cfg.data.batch_size for s in selections)
    # Only the chosen RM scores each step: 8 prompts x 4 samples per step, never K times that.
    assert sum(results["rm_calls"].values()) == 12 * cfg.data.batch_size * cfg.laser.num_samples
    assert results["iterations"][1]["generated_tokens"] > 0
    assert results["generated_tokens"] == sum(r["generated_tokens"] for r in results["iterations"])
    phases = results["iterations"][1]["phase_seconds"]
    assert set(phases) == {"embed", "bandit", "generate", "score", "train"} and all(v > 0 for v in phases.values())
    assert results["phase_seconds"]["generate"] >= phases["generate"]
    assert (out / "checkpoints" / "last.ckpt").exists() and (out / "csv" / "metrics.csv").exists()
    header = (out / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"rewards/chosen", "rewards/margins", "rewards/accuracies", "logps/chosen", "train/loss"} <= set(header)
    assert OmegaConf.load(out / "config.yaml").laser.iterations == 2
    # The loggers' run config (W&B's config, the CSV logger's hparams.yaml) carries the provenance too.
    hparams = OmegaConf.load(out / "csv" / "hparams.yaml")
    assert hparams.environment.git == results["environment"]["git"] and hparams.laser.iterations == 2


def test_stopped_and_resumed_run_ends_like_an_uninterrupted_one(make_config, tmp_path):
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    shorter = ["laser.iterations=3", "data.steps_per_iteration=3", "data.eval_limit=16"]  # 3 iterations matter
    run(make_config(shorter, output_dir=full_dir), full_dir)
    stopped = run(make_config([*shorter, "stop_after_iteration=1"], output_dir=part_dir), part_dir)
    assert stopped["complete"] is False and len(stopped["iterations"]) == 2
    # What a user types: `python -m laser.run resume=<run folder>` (the saved config is reused).
    run(make_config([f"resume={part_dir}"], output_dir=part_dir), part_dir)
    full, full_sel = _read(full_dir)
    part, part_sel = _read(part_dir)
    assert part["complete"] is True
    assert [r["test/accuracy"] for r in part["iterations"]] == [r["test/accuracy"] for r in full["iterations"]]
    assert [r["train/loss"] for r in part["iterations"][1:]] == [r["train/loss"] for r in full["iterations"][1:]]
    assert [s["arm"] for s in part_sel] == [s["arm"] for s in full_sel]
    assert [s["reward_raw"] for s in part_sel] == [s["reward_raw"] for s in full_sel]
    assert part["rm_selection_counts"] == full["rm_selection_counts"] and part["rm_calls"] == full["rm_calls"]
    assert part["final"] == full["final"]


def test_a_context_free_selector_skips_the_context_forward_and_runs_the_same(make_config, tmp_path, monkeypatch):
    """bandit=single ignores the context, so no context is computed (no policy forward per step); the run
    is the same as one that computes and discards it: decisions, rewards, losses and evaluations."""
    from laser.selection.context import LastTokenContext
    from laser.selection.single import SingleRM

    overrides = ["bandit=single", "policy.warm_start.steps=0", "laser.iterations=1"]
    calls = []
    encode = LastTokenContext.__call__
    monkeypatch.setattr(LastTokenContext, "__call__", lambda self, *a: calls.append(1) or encode(self, *a))
    skipped_dir, computed_dir = tmp_path / "skipped", tmp_path / "computed"
    run(make_config(overrides, output_dir=skipped_dir), skipped_dir)
    assert calls == []
    monkeypatch.setattr(SingleRM, "uses_context", True)
    run(make_config(overrides, output_dir=computed_dir), computed_dir)
    assert len(calls) == 6  # one per step
    skipped, skipped_sel = _read(skipped_dir)
    computed, computed_sel = _read(computed_dir)
    for key in ("arm", "reward_raw", "reward_normalised", "gold_pair_accuracy"):
        assert [s[key] for s in skipped_sel] == [s[key] for s in computed_sel]
    assert [r["train/loss"] for r in skipped["iterations"]][1:] == [r["train/loss"] for r in computed["iterations"]][1:]
    assert skipped["final"] == computed["final"] and skipped["rm_calls"] == computed["rm_calls"]


def test_gsm8k_experiment_runs_offline_on_the_real_files(make_config, tmp_path):
    data = require_data("gsm8k")
    cfg = make_config(["+experiment=gsm8k", "policy=tiny", "rm_pool=tiny", f"task.data_dir={data}",
                       "task.train_limit=64", "task.test_limit=8", "laser.iterations=1", "laser.num_samples=2",
                       "laser.pairs_per_prompt=1", "data.batch_size=4", "data.steps_per_iteration=2",
                       "policy.max_new_tokens=8", "policy.tiny.vocab_size=300", *BRIEF_WARM_START], legacy=False)
    out = tmp_path / "run"
    results = run(cfg, out)
    assert results["config"]["task"]["_target_"].endswith("GSM8K")
    assert {"test/accuracy", "test/accuracy_strict", "test/accuracy_flexible"} <= set(results["final"])
    assert len(results["iterations"]) == 2 and sum(results["rm_selection_counts"].values()) == 2


def test_results_do_not_depend_on_whether_local_models_were_cached(tmp_path):
    """Building the tiny model and its warm start must not shift the run's random stream."""
    from conftest import TINY_OVERRIDES, compose_config

    cache = tmp_path / "fresh-cache"
    overrides = [*TINY_OVERRIDES, "policy.warm_start.steps=20", "laser.iterations=1"]  # a warm start is built, briefly
    first = run(compose_config(overrides, output_dir=tmp_path / "a", cache_dir=cache), tmp_path / "a")  # builds
    second = run(compose_config(overrides, output_dir=tmp_path / "b", cache_dir=cache), tmp_path / "b")  # reuses
    assert [r["test/accuracy"] for r in first["iterations"]] == [r["test/accuracy"] for r in second["iterations"]]
    assert [r["train/loss"] for r in first["iterations"][1:]] == [r["train/loss"] for r in second["iterations"][1:]]


def test_malformed_rows_are_skipped_and_counted_in_results(make_config, tmp_path):
    data = require_data("gsm8k")
    local = tmp_path / "gsm8k"
    local.mkdir()
    for split in ("train", "test"):
        rows = (data / f"{split}.jsonl").read_text().splitlines()[:20]
        if split == "train":
            rows[3] = '{"question": "no answer field"}'
            rows.append("not json at all")
        (local / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    cfg = make_config(["task=gsm8k", f"task.data_dir={local}", "laser.iterations=1", "data.steps_per_iteration=1",
                       "data.group_by_category=false", "policy.max_new_tokens=4", "policy.warm_start.steps=2",
                       "policy.warm_start.batch_size=2",
                       "policy.tiny.vocab_size=300", "laser.num_samples=2", "data.batch_size=2"])
    with pytest.warns(UserWarning, match="train.jsonl"):
        results = run(cfg, tmp_path / "run")
    assert results["data/skipped_rows"] == 2
    assert results["primary_metric"] == "test/accuracy" and results["task"] == "gsm8k"


@pytest.mark.parametrize(("task", "folder", "extra", "metric"), [
    ("strategyqa", "strategyqa", [], "test/accuracy"),
    ("mmlu", "mmlu", ["task.subjects=[anatomy,virology]"], "test/accuracy_macro"),
    ("mt_bench", "mt_bench", [], "test/mean_length"),
])
def test_each_task_runs_offline_on_its_local_files(task, folder, extra, metric, make_config, tmp_path):
    data = require_data(folder)
    location = f"task.data_file={data / 'question.jsonl'}" if task == "mt_bench" else f"task.data_dir={data}"
    cfg = make_config([f"task={task}", location, "task.train_limit=16", "task.test_limit=4", "laser.iterations=1",
                       "data.steps_per_iteration=1", "data.group_by_category=false", "data.batch_size=2",
                       "laser.num_samples=2", "policy.max_new_tokens=6", "policy.warm_start.steps=2",
                       "policy.warm_start.batch_size=2", "policy.tiny.vocab_size=300"]
                      + (["rm_pool=tiny_instruct", "loss.nll_weight=0"]
                                                        if task == "mt_bench" else []) + extra)
    results = run(cfg, tmp_path / "run")
    assert results["task"] == task and metric in results["final"]
    assert len(results["iterations"]) == 2


def test_the_embedded_default_is_the_fair_miniature_and_runs(make_config, tmp_path):
    """`python -m laser.run` with no overrides: comparison, maximum and minimum, one judge per category plus
    noise, a warm start to 0.6 per category, LinUCB that tries every RM before exploiting (not training on
    what it tries). Shrunk to one iteration of 8 steps (the 4 arms are tried before any step trains) and a
    warm start cut at 50 steps (2 checks of the target)."""
    out = tmp_path / "run"
    cfg = make_config(["laser.iterations=1", "data.steps_per_iteration=8", "policy.warm_start.steps=50"],
                      output_dir=out, legacy=False)
    assert list(cfg.task.categories) == ["comparison", "maximum", "minimum"] and cfg.bandit.explore_pulls > 0
    assert cfg.policy.warm_start.target_accuracy == 0.6 and not cfg.bandit.train_while_exploring
    results = run(cfg, out)
    assert set(results["rm_selection_counts"]) == {"comparison_judge", "maximum_judge", "minimum_judge", "noise"}
    assert all(count >= 1 for count in results["rm_selection_counts"].values())
    assert results["skipped_steps"]["exploration_not_trained"] >= 4


def test_a_run_saved_before_a_class_moved_resumes(make_config, tmp_path):
    """Its config.yaml names `laser.policy.policy.load_policy` (before laser/policy/loading.py existed)."""
    part = tmp_path / "part"
    run(make_config(["laser.iterations=2", "stop_after_iteration=1"], output_dir=part), part)
    saved = part / "config.yaml"
    text = saved.read_text()
    assert "_target_: laser.policy.loading.load_policy" in text
    saved.write_text(text.replace("laser.policy.loading.load_policy", "laser.policy.policy.load_policy"))
    resumed = run(make_config([f"resume={part}"], output_dir=part), part)
    assert resumed["complete"] is True and len(resumed["iterations"]) == 3
