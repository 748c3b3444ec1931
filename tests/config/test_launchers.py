"""The scale path's configuration: sweep launchers and distributed trainers compose as documented."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import compose_config


def test_joblib_launcher_of_the_cpu_tables_runs_two_jobs_at_once():
    cfg = compose_config(["+experiment=reasoning_table_cpu"], hydra=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2


def test_slurm_launcher_starts_one_task_per_gpu():
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        pytest.skip("hydra-submitit-launcher is not installed (pip install -e '.[slurm]')")
    launcher = compose_config(["hydra/launcher=slurm"], hydra=True).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node == 8  # Lightning reads SLURM's tasks as ranks


def test_ray_launcher_composes():
    launcher = compose_config(["hydra/launcher=ray_local"], hydra=True).hydra.launcher
    assert launcher._target_.endswith("RayLauncher") and launcher.ray.remote.num_cpus == 1


@pytest.mark.parametrize(("trainer", "strategy"), [("ddp", "ddp"), ("fsdp", "FSDPStrategy")])
def test_distributed_trainers_compose_and_leave_sharding_to_laser(trainer, strategy):
    cfg = compose_config([f"trainer={trainer}"], hydra=True).trainer
    assert strategy in str(cfg.strategy) and cfg.use_distributed_sampler is False
