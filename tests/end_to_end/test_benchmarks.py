"""benchmarks/gpu_check.sh, the one benchmark CI cannot run at its real size: its no-GPU exit and its
whole code path on a tiny shape on the CPU (generate, RM scoring, the DPO step with and without
activation checkpointing, LinUCB's share of the step, and the comparison with TRL when trl is
installed). And the laser-vs-TRL scripts: their no-TRL exit everywhere, their tiny-shape run where
trl is installed (the `bench` extra; the CI venv has only `.[dev]`, so there they skip), and TRL kept
out of the core install. And update_microbatch.py on a tiny shape: the same gradient before and after, the
distinct responses counted, its verdicts."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
HAS_TRL = importlib.util.find_spec("trl") is not None
needs_trl = pytest.mark.skipif(not HAS_TRL, reason="trl is not installed (the CI venv has only '.[dev]'); "
                                                   "pip install -e '.[bench]' runs the laser-vs-TRL benchmarks")


def run_gpu_check(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the no-GPU path cannot be seen")
def test_gpu_check_without_a_gpu_exits_2_and_says_why():
    result = run_gpu_check()
    assert result.returncode == 2
    assert "no CUDA GPU visible" in result.stdout
    assert "generate:" not in result.stdout  # nothing measured


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", ["0", "1"])
def test_gpu_check_code_path_on_a_tiny_cpu_shape(checkpointing):
    trl = "1" if checkpointing == "0" else "0"  # the comparison with TRL once, not twice
    result = run_gpu_check(GPU_CHECK_DEVICE="cpu", GPU_CHECK_SHAPE="tiny", GPU_CHECK_PAIRS="2",
                           GPU_CHECK_CHECKPOINTING=checkpointing, GPU_CHECK_TRL=trl)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    rates = {name: float(m.group(1).replace(",", "")) for name in ("generate", "RM scoring")
             if (m := re.search(rf"^{name}: .* ([\d,]+) tokens/s", out, re.M))}
    assert set(rates) == {"generate", "RM scoring"} and min(rates.values()) > 0
    step = re.search(r"^LoRA DPO step \(activation checkpointing (on|off)\): 2 pairs x 512 tokens in ([\d.]+) s", out, re.M)
    assert step and step.group(1) == ("on" if checkpointing == "1" else "off") and float(step.group(2)) > 0
    assert re.search(r"^sampling: 8 separate calls [\d.]+ s / one batched call [\d.]+ s = [\d.]+x \(target >= 5x: (PASS|FAIL)\)",
                     out, re.M)
    assert "DPO-step peak GPU memory: n/a (no CUDA memory statistics" in out  # the copy variant ran too
    assert re.search(r"^LinUCB select\+update d=64, K=4 .* of the DPO step \(target <= 1%: (PASS|FAIL)\)", out, re.M)
    if trl == "0":
        assert "laser vs TRL: skipped (GPU_CHECK_TRL=0)" in out
    elif HAS_TRL:  # the comparison with TRL ran on the tiny shape too
        assert "laser pairs/s >= 1.0x TRL's" in out and "laser prompts/s >= 1.0x TRL's online DPO" in out
    else:
        assert "laser vs TRL: skipped (trl is not installed" in out


# ---- laser against TRL ---------------------------------------------------------------------------


def run_versus(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_trl_stays_out_of_the_core_install():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("trl")]
    assert project["optional-dependencies"]["bench"] == ["trl==1.16.0"]
    assert not [d for d in project["optional-dependencies"]["dev"] if d.lower().startswith("trl")]


@pytest.mark.parametrize("script", ["dpo_vs_trl.py", "online_vs_trl.py"])
def test_versus_scripts_without_trl_exit_2_and_say_why(script, tmp_path):
    """A `trl` package that fails to import stands in for a venv without TRL, wherever the test runs."""
    (tmp_path / "trl").mkdir()
    (tmp_path / "trl" / "__init__.py").write_text("raise ImportError('trl hidden by the test')\n")
    result = run_versus(script, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2, result.stderr[-2000:]
    assert "trl is not installed: pip install -e '.[bench]'" in result.stdout
    assert "/s" not in result.stdout  # nothing measured


@needs_trl
def test_dpo_vs_trl_on_a_tiny_shape_does_equal_work_and_gives_verdicts():
    result = run_versus("dpo_vs_trl.py", "--shape", "tiny", "--pairs", "2", "--prompt-len", "16", "--response-len",
                        "16", "--warmup", "1", "--steps", "2", "--rounds", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for label in ("laser (LaserModule step)", "TRL DPOTrainer"):
        assert re.search(rf"^{re.escape(label)} *: .* = +[\d.]+ pairs/s \| peak RSS above imports +\d+ MiB", out, re.M)
    assert "same token ids and LoRA tensors on both sides: True" in out
    assert re.search(r"^target: equal work: same first-batch loss within 0.0001 .* -> PASS$", out, re.M)
    assert re.search(r"^ratios laser / TRL: pairs/s [\d.]+x \| peak memory [\d.]+ \| fastest steps [\d.]+x", out, re.M)
    assert re.search(r"^target: laser pairs/s >= 1.0x TRL's .* -> (PASS|FAIL)$", out, re.M)
    assert re.search(r"^target: laser peak memory <= 1.0x TRL's .* -> (PASS|FAIL)$", out, re.M)


@needs_trl
def test_online_vs_trl_on_a_tiny_shape_trains_on_the_same_prompts_and_gives_a_verdict():
    result = run_versus("online_vs_trl.py", "--shape", "tiny", "--prompts", "2", "--max-new-tokens", "8",
                        "--warmup", "1", "--steps", "2", "--rounds", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for label in ("laser (bandit=single)", "TRL OnlineDPOTrainer"):
        assert re.search(rf"^{re.escape(label)} *: .* = +[\d.]+ prompts/s", out, re.M)
    assert "same prompt batches True" in out and "laser generated 96 tokens (budget 96)" in out
    assert "TRL completions with an EOS (cut short): 0%" in out
    assert re.search(r"^target: laser prompts/s >= 1.0x TRL's online DPO .* -> (PASS|FAIL)$", out, re.M)


# ---- the micro-batched update --------------------------------------------------------------------------------


@pytest.mark.slow
def test_update_microbatch_on_a_tiny_shape_computes_each_response_once_with_the_same_gradient():
    result = run_versus("update_microbatch.py", "--prompts", "2", "--samples", "4", "--pairs-per-prompt", "3",
                        "--prompt-len", "8", "--response-len", "8", "--hidden", "32", "--layers", "1", "--heads", "2",
                        "--vocab", "512", "--micro-batch", "2", "--warmup", "0", "--repeats", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "6 pairs" in out and "sequences per step: before 12 (chosen + rejected of every pair), after 8 distinct" in out
    assert re.search(r"^target: same gradient as before within (1e-4|0.0001|1e-04) relative \(measured [\d.e+-]+\) -> PASS$", out, re.M)
    for name in ("before", r"after \(micro_batch_size null\)", r"after \(micro_batch_size 2\)"):
        assert re.search(rf"^step time {name} +: +[\d.]+ ms", out, re.M)
        assert re.search(rf"^peak tensor memory of a step, {name} +: 6 pairs +[\d.]+ MiB \| 24 pairs +[\d.]+ MiB", out,
                         re.M)
    assert re.search(r"^target: after \(micro_batch_size null\) >= 1.5x .* -> (PASS|FAIL)$", out, re.M)
    assert re.search(r"^target: after \(micro_batch_size 2\) peak memory within 10% .* -> PASS$", out, re.M)


@pytest.mark.slow  # starts processes or trains for seconds: the quick suite stays under 5 minutes
def test_rm_http_scores_through_a_served_rm_and_prints_its_rates():
    """benchmarks/rm_http.py starts laser's server in its own process, scores through it both ways and stops it."""
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "rm_http.py"), "--rm-hidden", "32", "--rm-layers",
                           "1", "--batch", "8", "--warmup", "0", "--repeats", "1", "--port", "0"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    rates = re.findall(r"(\d+\.\d) responses/s", done.stdout)
    assert len(rates) == 3 and all(float(rate) > 0 for rate in rates)
    assert "HTTP hop, http, one request of 8 " in done.stdout and "HTTP hop, http, chat form" in done.stdout
