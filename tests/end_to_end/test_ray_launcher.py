"""`hydra/launcher=ray_local` really launches a sweep: a local Ray runs each job as a task (pip install -e '.[ray]')."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO


def _missing_ray() -> str | None:
    for module, package in [("ray", "ray[default]"), ("hydra_plugins.hydra_ray_launcher", "hydra-ray-launcher")]:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{package} is not installed (pip install -e '.[ray]')"
    return None


@pytest.mark.slow
def test_ray_local_sweep_runs_both_jobs(tmp_path):
    """`python -m laser.run -m hydra/launcher=ray_local seed=0,1`: one folder and results.json per seed."""
    reason = _missing_ray()
    if reason:
        pytest.skip(reason)
    sweep_dir = tmp_path / "sweep"
    env = {**os.environ, "LASER_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("RAY_ADDRESS", None)  # start a private local Ray, never join a running cluster
    command = [sys.executable, "-m", "laser.run", "-m", "hydra/launcher=ray_local", "seed=0,1",
               f"hydra.sweep.dir={sweep_dir}", "laser.iterations=1", "data.steps_per_iteration=2",
               "data.eval_limit=20"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Ray Launcher is launching 2 jobs" in done.stdout + done.stderr
    results = {job: json.loads((sweep_dir / job / "results.json").read_text()) for job in ("0", "1")}
    assert [results[job]["seed"] for job in ("0", "1")] == [0, 1]
    assert all(r["complete"] for r in results.values())
