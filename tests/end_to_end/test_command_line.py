"""Bad input on the command line is ONE clear line naming the bad value (and what is valid), exit code 2.

The cases caught before the heavy imports run `python -m laser.run` in a subprocess (a few seconds of
imports each, so only a handful): they show the CLI's exit code and its one `laser: error:` line, which
`laser.runs.folder.run_job` prints for any `LaserConfigError` of the job. Bad input found later in the
job (a missing data folder, a policy path) is checked in-process as that one-line error: in a subprocess
it costs ~6 s of CPU each, to import and build what comes before it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from laser.errors import LaserConfigError
from laser.run import run


def run_cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    """`python -m laser.run <overrides>` from the repository root, writing only under `tmp_path`."""
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    env["LASER_CACHE_DIR"] = str(tmp_path / "cache")
    command = [sys.executable, "-m", "laser.run", *overrides, f"hydra.run.dir={tmp_path / 'run'}"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single `laser: error:` line of a failed run (exit 2, no traceback)."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("laser: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("override", ["bandit=nope", "+experiment=nope", "bandit=linucb,nope"])
def test_cli_unknown_group_choice_is_one_line_naming_it_and_the_options(tmp_path, override):
    line = one_error_line(run_cli(tmp_path, "-m" if "," in override else "seed=0", override))
    group = override.lstrip("+").split("=")[0]
    assert f"{group}=nope: no such choice in conf/{group}/; choose one of" in line
    for choice in (("linucb", "linucb_explore", "single") if group == "bandit" else ("gsm8k", "instruction_following")):
        assert f" {choice}," in line or line.endswith(f" {choice}")


def one_line_error_of_the_job(make_config, tmp_path: Path, *overrides: str) -> str:
    """The `LaserConfigError` that `python -m laser.run <overrides>` prints (after `laser: error: `)."""
    out = tmp_path / "run"
    with pytest.raises(LaserConfigError) as caught:
        run(make_config(list(overrides), output_dir=out, tiny=False), out)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_missing_data_folder(make_config, tmp_path):
    line = one_line_error_of_the_job(make_config, tmp_path, "task=gsm8k", "task.data_dir=/no/such/dir")
    assert "/no/such/dir" in line and "train.jsonl" in line


def test_policy_path_that_does_not_exist(make_config, tmp_path):
    line = one_line_error_of_the_job(make_config, tmp_path, "policy=hf", "policy.model_name_or_path=/no/such/model")
    assert "/no/such/model" in line


def test_cli_malformed_laser_value(tmp_path):
    line = one_error_line(run_cli(tmp_path, "laser.num_samples=1"))
    assert "laser.num_samples=1" in line and ">= 2" in line


def test_cli_loss_knob_under_its_old_key_names_the_new_one(tmp_path):
    line = one_error_line(run_cli(tmp_path, "laser.beta=0.2"))
    assert "laser.beta=0.2 moved" in line and "set loss.beta=0.2 instead" in line
