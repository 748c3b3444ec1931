"""The scale path's configuration: launchers, distributed trainers, the vLLM backend's guard."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import CONF_DIR
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from laser.errors import LaserConfigError


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_joblib_launcher_of_the_cpu_tables_runs_two_jobs_at_once():
    cfg = _compose(["+experiment=reasoning_table_cpu"])
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2


def test_slurm_launcher_starts_one_task_per_gpu():
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
        pytest.skip("hydra-submitit-launcher is not installed (pip install -e '.[slurm]')")
    launcher = _compose(["hydra/launcher=slurm"]).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node == 8  # Lightning reads SLURM's tasks as ranks


def test_ray_launcher_composes():
    launcher = _compose(["hydra/launcher=ray_local"]).hydra.launcher
    assert launcher._target_.endswith("RayLauncher") and launcher.ray.remote.num_cpus == 1


@pytest.mark.parametrize(("trainer", "strategy"), [("ddp", "ddp"), ("fsdp", "FSDPStrategy")])
def test_distributed_trainers_compose_and_leave_sharding_to_laser(trainer, strategy):
    cfg = _compose([f"trainer={trainer}"]).trainer
    assert strategy in str(cfg.strategy) and cfg.use_distributed_sampler is False


def test_vllm_backend_without_vllm_is_one_clear_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    from laser.vllm_backend import require_vllm

    with pytest.raises(LaserConfigError, match=r"generation_backend=vllm needs vLLM .*pip install"):
        require_vllm()


def test_unknown_generation_backend_is_refused(tmp_path):
    from laser.policy import Policy

    with pytest.raises(LaserConfigError, match="generation_backend='tgi'"):
        Policy(str(tmp_path / "missing"), generation_backend="tgi")
