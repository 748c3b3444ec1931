"""Where a result came from (laser/runs/provenance.py): the checkout's commit and uncommitted changes,
library versions and the machine, in every results.json."""

from __future__ import annotations

import subprocess
from pathlib import Path

from laser.runs.provenance import environment, git_state, package_versions


def commit_all(repo: Path) -> str:
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"],
                   check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_git_state_names_the_commit_and_hashes_uncommitted_changes(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    head = commit_all(tmp_path)
    assert git_state(tmp_path) == {"commit": head, "dirty": False, "diff_sha256": None}
    (tmp_path / "a.py").write_text("x = 2\n")
    first = git_state(tmp_path)
    (tmp_path / "a.py").write_text("x = 3\n")
    second = git_state(tmp_path)
    assert first["commit"] == second["commit"] == head and first["dirty"] and second["dirty"]
    assert first["diff_sha256"] != second["diff_sha256"]  # two different edits are told apart


def test_git_state_outside_a_checkout_is_empty(tmp_path):
    assert git_state(tmp_path / "not-a-repo") == {}


def test_environment_has_the_versions_and_the_machine():
    env = environment()
    assert env["packages"]["torch"] is not None and env["packages"]["laser"] is not None
    assert env["python"].count(".") == 2 and env["cpu"] and env["torch_threads"] >= 1
    assert package_versions(("no-such-distribution-xyz",)) == {"no-such-distribution-xyz": None}


def test_every_logger_gets_the_config_and_the_environment_as_hyperparameters():
    from lightning.pytorch.loggers import Logger
    from omegaconf import OmegaConf

    from laser.run import log_run_config

    class Recording(Logger):
        name, version = "recording", 0
        logged: list = []

        def log_hyperparams(self, params, *args, **kwargs):
            self.logged.append(params)

        def log_metrics(self, metrics, step=None):
            pass

    loggers = [Recording(), Recording()]
    log_run_config(loggers, OmegaConf.create({"seed": 3, "laser": {"lr": "${seed}"}}))
    assert len(Recording.logged) == 2
    assert Recording.logged[0]["laser"] == {"lr": 3}  # resolved, as the run used it
    assert Recording.logged[0]["environment"]["git"] == git_state()
    log_run_config([], OmegaConf.create({"seed": 3}))  # no logger: nothing to do, no error
