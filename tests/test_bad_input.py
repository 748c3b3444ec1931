"""Bad input is reported as ONE clear line that names the bad value (and what is valid), and a
reward model that returns NaN/inf for a batch costs that step only, never the run.

The command-line cases run `python -m laser.run` in a subprocess (a few seconds of imports each, so
only a handful); the rest call `laser.run.run` in-process on the composed config.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import require_data

from laser.errors import LaserConfigError
from laser.rewards.likelihood import LikelihoodRM
from laser.rewards.noisy import NoisyRM
from laser.rewards.pool import RewardModelPool
from laser.rewards.verifier import VerifierRM
from laser.run import run
from laser.selection.single import SingleRM

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python -m laser.run <overrides>` from the repository root, writing only under `tmp_path`."""
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    env["LASER_CACHE_DIR"] = str(tmp_path / "cache")
    command = [sys.executable, "-m", "laser.run", *overrides, f"hydra.run.dir={tmp_path / 'run'}"]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single `laser: error:` line of a failed run (exit 2, no traceback)."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("laser: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


# ---- from the command line --------------------------------------------------------------------------


@pytest.mark.parametrize("override", ["bandit=nope", "+experiment=nope", "bandit=linucb,nope"])
def test_cli_unknown_group_choice_is_one_line_naming_it_and_the_options(tmp_path, override):
    line = one_error_line(run_cli(tmp_path, "-m" if "," in override else "seed=0", override))
    group = override.lstrip("+").split("=")[0]
    assert f"{group}=nope: no such choice in conf/{group}/; choose one of" in line
    assert ("linucb, online_ensemble" if group == "bandit" else "gsm8k, instruction_following") in line


def test_cli_missing_data_folder(tmp_path):
    line = one_error_line(run_cli(tmp_path, "task=gsm8k", "task.data_dir=/no/such/dir"))
    assert "/no/such/dir" in line and "train.jsonl" in line


def test_cli_policy_path_that_does_not_exist(tmp_path):
    line = one_error_line(run_cli(tmp_path, "policy=hf", "policy.model_name_or_path=/no/such/model"))
    assert "/no/such/model" in line


def test_cli_malformed_laser_value(tmp_path):
    line = one_error_line(run_cli(tmp_path, "laser.num_samples=1"))
    assert "laser.num_samples=1" in line and ">= 2" in line


# ---- in-process ----------------------------------------------------------------------------------------


def test_rm_path_that_does_not_exist_fails_before_any_model_is_built(make_config, tmp_path, monkeypatch):
    def no_policy(*args, **kwargs):
        raise AssertionError("the policy was loaded before the RM pool was checked")

    monkeypatch.setattr("laser.policy.policy.load_policy", no_policy)
    cfg = make_config(["rm_pool=oracle", "+rm_pool.models.bad._target_=laser.rewards.classifier.ClassifierRM",
                       "+rm_pool.models.bad.model_name_or_path=/no/such/rm", "bandit=single", "bandit.arm=bad"])
    with pytest.raises(LaserConfigError, match=r"rm_pool\.models\.bad\.model_name_or_path=/no/such/rm: no such folder"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "selections.jsonl").exists()  # no step was taken


def test_pool_checks_local_paths_of_wrapped_rms_but_leaves_hub_ids_lazy(tmp_path):
    missing = str(tmp_path / "no_such_lm")
    with pytest.raises(LaserConfigError, match=r"rm_pool\.models\.judge: .*" + re.escape(repr(missing))):
        RewardModelPool({"judge": NoisyRM(base=LikelihoodRM(missing))})
    pool = RewardModelPool({"hub": LikelihoodRM("some-org/some-rm")})  # no hub access needed yet
    assert pool.names == ["hub"] and pool[0].model is None


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.batch_size=0"], r"data\.batch_size=0: must be an integer >= 1"),
    (["policy.dtype=float13"], r"policy\.dtype='float13': must be one of float32, bfloat16, float16"),
    (["reward_normaliser.low_quantile=0.9"], r"low_quantile=0\.9 must be below high_quantile=0\.8"),
    (["bandit=single", "bandit.arm=no_such_rm"],
     r"bandit\.arm='no_such_rm' .*valid names: \['arith_judge', 'compare_judge', 'noise'\]"),
    (["laser.pairs_per_prompt=0"], r"laser\.pairs_per_prompt=0: must be an integer >= 1"),
])
def test_malformed_config_value_is_one_line_naming_it(make_config, tmp_path, overrides, message):
    with pytest.raises(LaserConfigError, match=message) as caught:
        run(make_config(overrides), tmp_path / "run")
    assert "\n" not in str(caught.value)


def test_unknown_gsm8k_extraction_lists_the_valid_ones(make_config, tmp_path):
    data = require_data("gsm8k")
    cfg = make_config(["task=gsm8k", f"task.data_dir={data}", "task.extraction=nope"])
    with pytest.raises(LaserConfigError, match=r"task\.extraction='nope' is not one of \['strict', 'flexible'\]"):
        run(cfg, tmp_path / "run")


# ---- an RM that returns NaN / inf -------------------------------------------------------------------


@pytest.mark.parametrize("bad_value", [float("nan"), float("-inf")], ids=["nan", "inf"])
def test_nonfinite_rm_scores_skip_the_step_and_the_run_completes(make_config, tmp_path, monkeypatch, bad_value):
    real_score = VerifierRM.score
    calls: list[bool] = []  # per score call: did it return the bad value?
    updates: list[float] = []

    def every_other_call_bad(self, batch):
        calls.append(len(calls) % 2 == 1)
        return torch.full((len(batch),), bad_value) if calls[-1] else real_score(self, batch)

    monkeypatch.setattr(VerifierRM, "score", every_other_call_bad)
    monkeypatch.setattr(SingleRM, "update", lambda self, selection, context, reward, feedback=None: updates.append(reward),
                        raising=False)
    out = tmp_path / "run"
    results = run(make_config(["rm_pool=oracle", "bandit=single", "bandit.arm=oracle", "laser.iterations=1"]), out)

    selections = [json.loads(line) for line in (out / "selections.jsonl").read_text().splitlines()]
    assert results["complete"] is True
    assert json.loads((out / "results.json").read_text())["complete"] is True
    assert len(calls) == len(selections) == 6  # one score call per step; evaluation needs no RM
    assert results["skipped_steps"]["nonfinite_scores"] == sum(calls) == 3
    for was_bad, line in zip(calls, selections, strict=True):
        if was_bad:
            assert line["skipped"] == "nonfinite_scores"
            assert line["reward_raw"] is None and line["reward_normalised"] is None
        else:
            assert line.get("skipped") in (None, "no_pairs")  # all-tied scores make no pairs
    rewarded = [line for line in selections if "skipped" not in line]
    assert rewarded and all(isinstance(line["reward_raw"], float) for line in rewarded)
    # The selector learns from the rewarded steps only, never from a skipped one.
    assert updates == [line["reward_normalised"] for line in rewarded]
