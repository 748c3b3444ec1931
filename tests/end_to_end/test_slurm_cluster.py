"""`hydra/launcher=slurm` end to end: a real 2-job sweep submitted through a real SLURM cluster.

Skipped unless `sbatch` is on PATH and `sinfo` answers. `sudo bash .ci/local_slurm.sh` starts a
one-node cluster on this machine for it. The launcher config asks for 8 GPUs, 8 tasks, 8 CPUs and 480 GB;
on a CPU node the overrides below ask for what a tiny run needs (no GPUs, one task, one CPU, 2 GB).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, TINY_OVERRIDES

CPU_NODE_OVERRIDES = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.tasks_per_node=1",  # one task: one Lightning process on the CPU
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",  # without it a memory-aware scheduler may give one job the whole node
    "hydra.launcher.timeout_min=10",
]


def slurm_answers() -> str | None:
    """None when a SLURM cluster can take jobs here, else why not."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no SLURM here (sbatch/sinfo not on PATH; `sudo bash .ci/local_slurm.sh` starts one)"
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%P %T"], capture_output=True, text=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 5 s (is slurmctld running?)"
    if result.returncode != 0 or not result.stdout.strip():
        return f"sinfo failed: {(result.stderr or result.stdout).strip()[:200]}"
    return None


@pytest.mark.slow
def test_slurm_launcher_runs_a_two_job_sweep_on_a_real_cluster(tmp_path, cache_dir):
    reason = slurm_answers()
    if reason:
        pytest.skip(reason)
    sweep_dir = tmp_path / "sweep"
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    env["LASER_CACHE_DIR"] = str(cache_dir)
    # The jobs inherit the environment (sbatch --export=ALL): they import this checkout's laser.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "laser.run", "-m", *CPU_NODE_OVERRIDES, *TINY_OVERRIDES,
               "laser.iterations=1", "seed=3,4", f"hydra.sweep.dir={sweep_dir}"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    seeds = set()
    for job in ("0", "1"):
        results = json.loads((sweep_dir / job / "results.json").read_text())
        assert results["complete"] is True
        seeds.add(results["seed"])
    assert seeds == {3, 4}

    # submitit's record of the SLURM jobs: the sbatch script and each array task's logs.
    submitit_dir = sweep_dir / ".submitit"
    scripts = list(submitit_dir.glob("*/*_submission.sh"))
    assert scripts and "#SBATCH --array=0-1" in scripts[0].read_text()
    logs = sorted(submitit_dir.glob("*_*/*_log.out"))
    assert len(logs) == 2, sorted(p.name for p in submitit_dir.rglob("*"))
    for log in logs:
        assert "Starting with JobEnvironment" in log.read_text()
        assert log.with_name(log.name.replace("_log.out", "_log.err")).exists()
        assert list(log.parent.glob("*_result.pkl"))  # the job returned (submitit pickles its result)
