"""benchmarks/gpu_check.sh, the one benchmark CI cannot run at its real size: its no-GPU exit and its
whole code path on a tiny shape on the CPU (generate, RM scoring, the DPO step with and without
activation checkpointing, LinUCB's share of the step)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import torch
from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


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
    result = run_gpu_check(GPU_CHECK_DEVICE="cpu", GPU_CHECK_SHAPE="tiny", GPU_CHECK_PAIRS="2",
                           GPU_CHECK_CHECKPOINTING=checkpointing)
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
