"""Every experiment file composes and runs one tiny job; a table's sweep really launches its jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BRIEF_WARM_START, CONF_DIR, DATA_DIR, REPO, briefly, compose_config

from laser.run import run


def test_experiment_is_not_in_the_primary_defaults():
    """`+experiment=NAME` only works when `experiment` is absent from config.yaml's defaults."""
    defaults = yaml.safe_load(Path(CONF_DIR, "config.yaml").read_text())["defaults"]
    groups = [next(iter(d)) if isinstance(d, dict) else d for d in defaults]
    assert "experiment" not in groups
    assert {"policy", "rm_pool", "bandit", "task", "trainer", "logger"} <= set(groups)


def test_gsm8k_experiment_composes_to_the_paper_configuration(make_config, tmp_path):
    cfg = make_config(["+experiment=gsm8k"], tiny=False)
    assert cfg.policy.model_name_or_path == "meta-llama/Meta-Llama-3-8B"
    assert dict(cfg.policy.lora) == {"r": 16, "lora_alpha": 32, "lora_dropout": 0.1,
                                     "target_modules": ["q_proj", "v_proj"]}
    assert cfg.policy.temperature == 0.8
    assert [m.model_name_or_path for m in cfg.rm_pool.models.values()] == [
        "HuggingFaceH4/zephyr-7b-alpha", "Qwen/Qwen1.5-7B-Chat", "openbmb/Eurus-7b-kto",
        "allenai/OLMo-7B-0724-Instruct-hf"]
    assert cfg.bandit._target_.endswith("LinUCB") and cfg.bandit.alpha == 0.1 and cfg.bandit.ridge_lambda == 1.0
    assert (cfg.laser.iterations, cfg.laser.num_samples, cfg.laser.pairs_per_prompt) == (10, 30, 10)
    assert cfg.laser.lr == 5e-6 and cfg.loss.nll_weight == 1.0 and cfg.data.batch_size == 16
    assert cfg.task._target_.endswith("GSM8K")


EXPERIMENTS = sorted(p.stem for p in Path(CONF_DIR, "experiment").glob("*.yaml") if p.stem != "cpu_table")


# Stand-ins so the paper-scale experiments run here: tiny policy and pool, local data, few rows.
PAPER_SCALE_STANDINS = ["policy=tiny", "rm_pool=tiny", "policy.max_new_tokens=8", "policy.tiny.vocab_size=300",
                        "laser.num_samples=2", "laser.pairs_per_prompt=1", "data.batch_size=2", "task.train_limit=16",
                        "task.test_limit=4"]


LOCAL_DATA = {"gsm8k": "gsm8k", "strategyqa": "strategyqa", "mmlu": "mmlu"}


def sweep_params(name: str) -> dict[str, str]:
    node = yaml.safe_load(Path(CONF_DIR, "experiment", f"{name}.yaml").read_text())
    return (node.get("hydra") or {}).get("sweeper", {}).get("params", {})


def first_job_overrides(name: str) -> list[str]:
    """The overrides of the sweep's first job (first value of every swept key)."""
    overrides = []
    for key, values in sweep_params(name).items():
        first = str(values).split(",")[0] if not str(values).startswith("[") else str(values).split("],")[0] + "]"
        overrides.append(f"{key}={first}")
    return overrides


def test_every_table_experiment_declares_its_sweep():
    tables = [name for name in EXPERIMENTS if name not in ("gsm8k", "legacy_miniature")]  # single runs
    assert len(tables) >= 10
    for name in tables:
        assert "seed" in sweep_params(name), f"{name} does not sweep seeds"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_one_tiny_job(name, make_config, tmp_path):
    # A brief warm start: each task and category mix would otherwise train its own tiny policy to 0.6 accuracy.
    overrides = [f"+experiment={name}", "laser.iterations=1", "data.steps_per_iteration=1", "data.eval_limit=8",
                 *BRIEF_WARM_START]
    overrides += [o for o in first_job_overrides(name) if not o.startswith(("seed=", "rm_pool=reasoning"))]
    paper_scale = compose_config([f"+experiment={name}"]).policy.get("tiny") is None  # a hub policy
    if paper_scale:
        overrides += PAPER_SCALE_STANDINS
        task = next((o.split("=")[1] for o in overrides if o.startswith("task=")), "gsm8k")
        if not (DATA_DIR / LOCAL_DATA[task]).exists():
            pytest.skip(f"benchmark data not found at {DATA_DIR / LOCAL_DATA[task]}")
        overrides.append(f"task.data_dir={DATA_DIR / LOCAL_DATA[task]}")
        if any(o.startswith("context=sentence_encoder") for o in overrides):
            pytest.skip("the sentence-encoder context needs a local encoder folder")
    out = tmp_path / name
    results = run(briefly(make_config(overrides, output_dir=out, legacy=False)), out)  # the experiment's own task and pool
    assert results["complete"] and len(results["iterations"]) == 2
    assert sum(results["rm_selection_counts"].values()) >= 1


@pytest.mark.slow
def test_a_table_sweep_launches_every_job_in_parallel(tmp_path):
    """`python -m laser.run -m +experiment=...` with the joblib launcher: one folder and results.json per job."""
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "LASER_CACHE_DIR": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "laser.run", "-m", "+experiment=reasoning_table_cpu",
               "bandit=linucb,score_ensemble", "seed=0",
               f"hydra.sweep.dir={sweep_dir}", "laser.iterations=1", "data.steps_per_iteration=2",
               "data.eval_limit=20"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/results.json"))]
    assert [r["method"] for r in results] == ["linucb", "score_ensemble"]
    # The ensemble scores every response with every RM (K=4: three judges and noise); LASeR with one.
    assert len(results[1]["rm_calls"]) == 4
    assert sum(results[1]["rm_calls"].values()) == 4 * sum(results[0]["rm_calls"].values())


@pytest.mark.parametrize("name", sorted(p.stem for p in Path(CONF_DIR, "method").glob("*.yaml")))
def test_every_method_row_composes_its_bandit_and_reward(name):
    """`+method=<row>` (the reward ablation's rows) sets the bandit, the selector reward and the row's name."""
    from conftest import compose_config

    cfg = compose_config([f"+method={name}"])
    bandit, _, reward = name.rpartition("_") if name.startswith("linucb") else (name, "", "paper")
    assert cfg.method_name == (f"{bandit}/{reward}" if name.startswith("linucb") else name)
    expected_bandit = compose_config([f"bandit={bandit}"]).bandit
    assert cfg.bandit == expected_bandit
    assert cfg.selector_reward == compose_config([f"selector_reward={reward}"]).selector_reward
