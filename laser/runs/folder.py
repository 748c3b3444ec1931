"""The run folder: where a job writes, claimed so that two jobs never share one, and continued on resume.

`prepare_output_dir` turns the composed config into the one to run with: a new run saves its resolved
config after checking its models (`laser.config.preflight`) and that the folder is writable and holds
no earlier run; `resume=<folder>` reloads the config the run started with. `run_job` wraps an entry
point's job so bad input exits 2 with one line. Importing this module registers the resolvers that
conf/hydra/default.yaml names the folders with.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from laser.config.moved import follow_moves
from laser.config.preflight import check_memory, check_models
from laser.config.remote_check import check_remote_arms
from laser.errors import LaserConfigError
from laser.runs.files import TEMP_PATTERN

log = logging.getLogger("laser")
CONFIG_FILE = "config.yaml"  # the resolved config, saved in every run folder
CHECKPOINT = Path("checkpoints") / "last.ckpt"
LOCK_FILE = "run.lock"


def run_dir(resume: str | None) -> str:
    """The folder of a single run: the resumed one, or outputs/runs/<time>."""
    if resume:
        return str(resume)
    return "outputs/runs/" + datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def hydra_subdir(resume: str | None) -> str:
    """Where Hydra records the command: .hydra, or .hydra-resume/<time> so a resume keeps the original."""
    if resume:
        return ".hydra-resume/" + datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return ".hydra"


# use_cache: the folder name is computed once per process, however often Hydra resolves it.
OmegaConf.register_new_resolver("laser_run_dir", run_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("laser_hydra_subdir", hydra_subdir, use_cache=True, replace=True)


def run_job(job: Callable[[DictConfig, Path], dict[str, Any]], cfg: DictConfig) -> float | None:
    """Run `job(cfg, output_dir)` in Hydra's output folder; bad input exits 2 with one line. Returns
    the primary metric, which a Hydra sweeper can optimise."""
    from hydra.core.hydra_config import HydraConfig

    try:
        payload = job(cfg, Path(HydraConfig.get().runtime.output_dir))
    except LaserConfigError as error:
        print(f"laser: error: {error}", file=sys.stderr)
        sys.exit(2)
    return payload["final"].get(payload.get("primary_metric", "test/accuracy"))


def prepare_output_dir(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """The config to run with: on resume, the one the run started with; else `cfg`, after checking
    that the folder holds no earlier run (never overwrite outputs)."""
    if cfg.get("resume"):
        return _resumed_config(cfg, output_dir)
    if (output_dir / "results.json").exists() or (output_dir / CHECKPOINT).exists():
        raise LaserConfigError(f"output folder {output_dir} already holds a run; refusing to overwrite it "
                               f"(continue it with resume={output_dir})")
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    check_models(resolved)  # every model the run needs exists, before the folder is claimed or anything loads
    resolved = check_memory(resolved)  # GPU runs: the step fits the device (rm_pool.placement=auto resolved)
    check_remote_arms(resolved)  # and every RM server answers
    check_writable(output_dir)
    claim_output_dir(output_dir, resuming=False)
    OmegaConf.save(resolved, output_dir / CONFIG_FILE)
    return resolved


def _resumed_config(cfg: DictConfig, output_dir: Path) -> DictConfig:
    saved = Path(cfg.resume) / CONFIG_FILE
    if not saved.exists():
        raise LaserConfigError(nothing_to_resume(Path(cfg.resume)))
    resumed = follow_moves(OmegaConf.load(saved))  # a run saved before a class moved names its old path
    resumed.stop_after_iteration = cfg.get("stop_after_iteration")  # the only knob a resume may change
    check_models(resumed)
    resumed = check_memory(resumed)
    check_remote_arms(resumed)
    check_writable(output_dir)
    claim_output_dir(output_dir, resuming=True)
    for debris in [*output_dir.glob(TEMP_PATTERN), *output_dir.glob(f"checkpoints/{TEMP_PATTERN}")]:
        debris.unlink()  # a write cut short by a kill; the file it would have replaced is intact
    if (Path(cfg.resume) / CHECKPOINT).exists():
        resumed.resume = str(cfg.resume)
    else:  # stopped before its first checkpoint: nothing to keep, start it again in place
        log.warning("resume=%s: no checkpoint yet; starting the run again from the beginning", cfg.resume)
        resumed.resume = None
        (output_dir / "selections.jsonl").unlink(missing_ok=True)
        (output_dir / "samples.jsonl").unlink(missing_ok=True)
    return resumed


def nothing_to_resume(folder: Path) -> str:
    """Why `resume=<folder>` cannot continue a run, and the command that starts it (again)."""
    if not folder.is_dir():
        return f"resume={folder}: no such folder; a run folder is outputs/runs/<time> (it holds {CONFIG_FILE})"
    overrides_file = folder / ".hydra" / "overrides.yaml"
    if not overrides_file.exists():
        return f"resume={folder}: not a laser run folder (no {CONFIG_FILE}, no .hydra/overrides.yaml)"
    overrides = [o for o in OmegaConf.load(overrides_file) if not str(o).startswith(("resume=", "hydra.run.dir="))]
    command = " ".join(["python -m laser.run", *map(str, overrides), f"hydra.run.dir={folder}"])
    return f"resume={folder}: the run stopped before it saved anything (no {CONFIG_FILE}, no checkpoint), so there " \
           f"is nothing to continue; start it again with: {command}"


def claim_output_dir(output_dir: Path, resuming: bool) -> None:
    """Take the folder's lock (`run.lock`, holding our PID), so two jobs pointed at one folder (two sweeps
    with the same sweep dir, say) never write into each other's run. A lock whose process is gone is
    stale: a resume takes it over; a new run refuses the folder if it holds an unfinished run (its config
    was saved), and takes it over if the run died before saving anything."""
    if os.environ.get("LOCAL_RANK", "0") != "0":  # DDP ranks > 0 run inside rank 0's claim
        return
    lock = output_dir / LOCK_FILE
    try:
        handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        owner = lock.read_text().strip() or "?"
        if owner.isdigit() and _process_alive(int(owner)) and int(owner) != os.getpid():
            raise LaserConfigError(f"output folder {output_dir} is in use by another laser process (pid {owner}); "
                                   f"point this job elsewhere with hydra.run.dir / hydra.sweep.dir") from None
        if not resuming and (output_dir / CONFIG_FILE).exists():
            raise LaserConfigError(f"output folder {output_dir} holds an unfinished run; continue it with "
                                   f"resume={output_dir} or choose another folder") from None
        lock.write_text(str(os.getpid()))
        return
    with os.fdopen(handle, "w") as file:
        file.write(str(os.getpid()))


def release_output_dir(output_dir: Path) -> None:
    """Drop the folder's lock: the run is finished."""
    (output_dir / LOCK_FILE).unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_writable(output_dir: Path, min_free_mb: int = 200) -> None:
    """Fail in one line, before any work, if the run folder cannot be written or its disk is full."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise LaserConfigError(f"output folder {output_dir} is not writable ({error.strerror}); "
                               f"choose another with hydra.run.dir=<folder>") from None
    free_mb = shutil.disk_usage(output_dir).free // 2**20
    if free_mb < min_free_mb:
        raise LaserConfigError(f"only {free_mb} MB free on the disk of {output_dir} (need >= {min_free_mb} MB "
                               f"for checkpoints and logs); free space or set hydra.run.dir=<folder>")
