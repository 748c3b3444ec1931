"""Where a result came from: the code (git commit, a hash of uncommitted changes), the library versions
and the machine, written into every `results.json` as `environment`, so two runs of one config on two
machines can be told apart (float summation order differs between CPUs, BLAS builds and thread counts)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("laser", "torch", "transformers", "peft", "lightning", "hydra-core", "datasets")
REPO = Path(__file__).resolve().parents[2]  # the checkout laser runs from (an editable install)


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """{"commit", "dirty", "diff_sha256"} of the checkout at `repo`; {} outside a git checkout (a wheel)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        diff = git("diff", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": bool(diff),
            "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None where it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def nvidia_driver() -> str | None:
    """The NVIDIA driver version `nvidia-smi` reports, or None (no driver, no nvidia-smi)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def environment() -> dict[str, Any]:
    """The `environment` block of `results.json`: code, versions and machine."""
    cuda = torch.cuda.is_available()
    return {
        "git": git_state(), "python": platform.python_version(), "packages": package_versions(),
        "platform": platform.platform(), "cpu": cpu_model(), "torch_threads": torch.get_num_threads(),
        "cuda": {"version": torch.version.cuda, "device": torch.cuda.get_device_name(0),
                 "devices": torch.cuda.device_count(), "driver": nvidia_driver()} if cuda else None,
    }
