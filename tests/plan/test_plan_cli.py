"""`python -m laser.plan` and the preflight that runs it (laser/plan/__main__.py, laser/config/preflight.py):
a phase table and a verdict; a GPU run that cannot fit is refused in one line before step 1; a CPU run
never plans; rm_pool.placement=auto follows the plan."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, compose_config
from omegaconf import OmegaConf
from plan_models import tiny_llama_folder

from laser.config.preflight import check_memory, is_gpu_run
from laser.errors import LaserConfigError
from laser.plan.__main__ import main
from laser.plan.inputs import GIB, plan_inputs, planned_rms
from laser.plan.planner import plan_memory

PHASES = ("policy state", "generation", "update", "evaluation")


def test_the_default_config_prints_every_phase_and_fits(capsys):
    assert main(["plan.device_memory_gb=80"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert all(any(line.startswith(phase) for line in lines) for phase in PHASES)
    assert lines[-1].startswith("fits 80 GB: peak ")


# The tiny policy's generation of 32 x 8 sequences needs ~0.19 GiB; the rest of its step far less.
TOO_SMALL = ["plan.device_memory_gb=0.1", "plan.reserve_gb=0", "data.batch_size=32", "+laser.micro_batch_size=8",
             "data.eval_batch_size=8"]


def test_a_config_that_cannot_fit_says_so_and_which_knob_fits(capsys):
    assert main(TOO_SMALL) == 1
    out = capsys.readouterr().out
    assert "does not fit 0.1 GB: generation " in out
    assert "  generation: fits with policy.prompts_per_generate=" in out and ", or data.batch_size=" in out
    assert [line.split()[-1] for line in out.splitlines() if line.startswith(("update", "evaluation"))] == ["ok"] * 2


@pytest.mark.parametrize("override", ["policy=nope", "plan.device_memory_gb=-1"])
def test_a_bad_override_is_one_line_and_exit_2(capsys, override):
    assert main([override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and override.split("=")[0] in err


def test_a_cpu_run_never_plans():
    cfg = compose_config(["trainer.accelerator=cpu", "plan.device_memory_gb=0.000001"])
    assert not is_gpu_run(cfg)
    assert check_memory(cfg) is cfg  # an impossible budget, and no refusal: nothing was planned


def test_a_gpu_run_that_cannot_fit_is_refused_in_one_line():
    cfg = compose_config(["trainer.accelerator=gpu", *TOO_SMALL])
    with pytest.raises(LaserConfigError) as error:
        check_memory(OmegaConf.create(OmegaConf.to_container(cfg)))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("memory plan: generation needs ") and "knob: policy.prompts_per_generate=" in message


def test_plan_check_false_skips_the_plan():
    cfg = compose_config(["trainer.accelerator=gpu", "plan.device_memory_gb=0.000001", "plan.check=false"])
    assert check_memory(OmegaConf.create(OmegaConf.to_container(cfg))) is not None


@pytest.mark.slow  # starts processes or trains for seconds: the quick suite stays under 5 minutes
def test_the_run_refuses_an_impossible_gpu_config_before_step_1(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "laser.run", "trainer.accelerator=gpu", *TOO_SMALL,
                           f"hydra.run.dir={out}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("laser: error:")]
    assert len(errors) == 1 and "memory plan: generation needs" in errors[0]
    assert not (out / "config.yaml").exists()  # refused before the run folder was claimed


def pool_of_two(folder: str) -> dict:
    rm = {"_target_": "laser.rewards.likelihood.LikelihoodRM", "model_name_or_path": folder, "batch_size": 4,
          "max_length": 64, "dtype": "float32", "device": "cuda"}
    return {"_target_": "laser.rewards.pool.RewardModelPool", "device": "cuda", "placement": "auto",
            "models": {"a": rm, "b": rm}}


def test_placement_auto_is_resident_when_everything_fits_else_offload(tmp_path):
    cfg = compose_config(["trainer.accelerator=gpu", "plan.reserve_gb=0"])
    cfg.rm_pool = pool_of_two(tiny_llama_folder(tmp_path / "rm"))
    roomy = plan_memory(plan_inputs(cfg))
    assert roomy.placement == "resident"
    resident_peak = roomy.worst.peak
    forced = dict(pool_of_two(cfg.rm_pool.models.a.model_name_or_path), placement="offload")
    offload_peak = plan_memory(plan_inputs(OmegaConf.merge(cfg, {"rm_pool": forced}))).worst.peak
    assert offload_peak < resident_peak
    cfg.plan.device_memory_gb = (offload_peak + resident_peak) / 2 / GIB  # only offloading fits
    tight = plan_memory(plan_inputs(cfg))
    assert tight.placement == "offload" and tight.fits
    resolved = check_memory(OmegaConf.create(OmegaConf.to_container(cfg)))
    assert resolved.rm_pool.placement == "offload"


def test_the_plan_counts_rms_with_a_model_even_wrapped_and_skips_the_rest():
    qwen = {"_target_": "laser.rewards.likelihood.LikelihoodRM", "model_name_or_path": "Qwen/Qwen1.5-7B-Chat",
            "dtype": "bfloat16"}
    pool = OmegaConf.create({"models": {
        "plain": qwen, "wrapped": {"_target_": "laser.rewards.noisy.NoisyRM", "base": qwen, "corrupt_prob": 0.5},
        "verifier": {"_target_": "laser.rewards.verifier.VerifierRM"}, "dropped": None}})
    assert [rm.name for rm in planned_rms(pool)] == ["plain", "wrapped"]


def test_an_fsdp_run_is_not_refused_by_a_plan_that_holds_every_weight_on_one_gpu():
    cfg = compose_config(["trainer=fsdp", "trainer.accelerator=gpu", *TOO_SMALL])
    assert check_memory(OmegaConf.create(OmegaConf.to_container(cfg))) is not None
