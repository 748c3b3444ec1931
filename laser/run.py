"""Entry point: `python -m laser.run [overrides]` (see conf/config.yaml).

Seed, build every component from the config, evaluate before training (iteration 0), fit for
`laser.iterations` iterations, write `results.json`, finish the logger. With `resume=<run folder>`
the run continues from its last checkpoint, with the config it started with.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from laser.config.checks import check_config, check_group_choices
from laser.config.instantiate import instantiate
from laser.config.preflight import check_models
from laser.errors import LaserConfigError

log = logging.getLogger("laser")
# Several processes: Lightning suggests sync_dist for every epoch-level metric. laser logs figures that
# are already the same on every rank (evaluation on gathered answers, counts summed over ranks) or
# deliberately per process (phase times), so the suggestion is noise here.
warnings.filterwarnings("ignore", message=r"It is recommended to use `self\.log\(", category=UserWarning)
CONFIG_FILE = "config.yaml"  # the resolved config, saved in every run folder
CHECKPOINT = Path("checkpoints") / "last.ckpt"


def _run_dir(resume: str | None) -> str:
    if resume:
        return str(resume)
    return "outputs/runs/" + datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def _hydra_subdir(resume: str | None) -> str:
    if resume:
        return ".hydra-resume/" + datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    return ".hydra"


# use_cache: the folder name is computed once per process, however often Hydra resolves it.
OmegaConf.register_new_resolver("laser_run_dir", _run_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("laser_hydra_subdir", _hydra_subdir, use_cache=True, replace=True)


def prepare_output_dir(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """The config to run with: on resume, the one the run started with; else `cfg`, after checking
    that the folder holds no earlier run (never overwrite outputs)."""
    if cfg.get("resume"):
        saved = Path(cfg.resume) / CONFIG_FILE
        if not saved.exists():
            raise LaserConfigError(nothing_to_resume(Path(cfg.resume)))
        resumed = OmegaConf.load(saved)
        resumed.stop_after_iteration = cfg.get("stop_after_iteration")  # the only knob a resume may change
        check_models(resumed)
        check_writable(output_dir)
        claim_output_dir(output_dir, resuming=True)
        for debris in [*output_dir.glob(".*.tmp-*"), *output_dir.glob("checkpoints/.*.tmp-*")]:
            debris.unlink()  # a write cut short by a kill; the file it would have replaced is intact
        if (Path(cfg.resume) / CHECKPOINT).exists():
            resumed.resume = str(cfg.resume)
        else:  # stopped before its first checkpoint: nothing to keep, start it again in place
            log.warning("resume=%s: no checkpoint yet; starting the run again from the beginning", cfg.resume)
            resumed.resume = None
            (output_dir / "selections.jsonl").unlink(missing_ok=True)
            (output_dir / "samples.jsonl").unlink(missing_ok=True)
        return resumed
    if (output_dir / "results.json").exists() or (output_dir / CHECKPOINT).exists():
        raise LaserConfigError(f"output folder {output_dir} already holds a run; refusing to overwrite it "
                               f"(continue it with resume={output_dir})")
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    check_models(resolved)  # every model the run needs exists, before the folder is claimed or anything loads
    check_writable(output_dir)
    claim_output_dir(output_dir, resuming=False)
    OmegaConf.save(resolved, output_dir / CONFIG_FILE)
    return resolved


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
    import os

    if os.environ.get("LOCAL_RANK", "0") != "0":  # DDP ranks > 0 run inside rank 0's claim
        return
    lock = output_dir / "run.lock"
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


def _process_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_writable(output_dir: Path, min_free_mb: int = 200) -> None:
    """Fail in one line, before any work, if the run folder cannot be written or its disk is full."""
    import shutil

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


def build(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Instantiate task, RM pool, selector, normaliser, data, policy and the LASeR module.

    The policy comes last: loading it can take minutes, so every cheap check fails before it."""
    from laser.selection.build import build_selector
    from laser.selection.context import ContextEncoder
    from laser.step.module import LaserModule

    laser_cfg = OmegaConf.to_container(cfg.laser)
    laser_cfg.pop("iterations")
    task = instantiate(cfg.task)
    rm_pool = instantiate(cfg.rm_pool, _convert_="all")
    selector, context_options = build_selector(cfg.bandit, num_arms=len(rm_pool), arm_names=rm_pool.names)
    context_encoder = ContextEncoder(**context_options, seed=cfg.seed)
    normaliser = instantiate(cfg.reward_normaliser)
    datamodule = instantiate(cfg.data, task=task)
    policy = instantiate(cfg.policy, task=task, _convert_="all")
    module = LaserModule(policy, rm_pool, selector, task, normaliser, output_dir=str(output_dir),
                         stop_after_iteration=cfg.get("stop_after_iteration"), context_encoder=context_encoder,
                         **laser_cfg)
    return {"task": task, "module": module, "datamodule": datamodule, "rm_pool": rm_pool, "selector": selector}


def _job_name() -> str | None:
    """The job's overrides as a name (a sweep's jobs differ by exactly these), or None."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().job.override_dirname or None
    except (ValueError, AttributeError):
        return None


def make_trainer(cfg: DictConfig, output_dir: Path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from laser.runs.checkpoint_io import AtomicCheckpointIO

    loggers = []
    for logger_cfg in (cfg.get("logger") or {}).values():
        if cfg.get("resume") and logger_cfg._target_.endswith("CSVLogger"):
            # A resumed session logs to its own file: the CSV logger would rewrite the earlier one.
            logger_cfg = OmegaConf.merge(logger_cfg, {"version": "resumed-" + _hydra_subdir(cfg.resume)[-19:]})
        if logger_cfg._target_.endswith("WandbLogger") and not logger_cfg.get("name"):
            logger_cfg = OmegaConf.merge(logger_cfg, {"name": _job_name()})  # e.g. "bandit=random,seed=3"
        loggers.append(instantiate(logger_cfg))
    checkpoints = ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="epoch-{epoch}",
                                  auto_insert_metric_name=False,
                                  save_last=True, save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True)
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=[checkpoints], plugins=[AtomicCheckpointIO()])


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """One LASeR job; returns the results payload (also written to `results.json`)."""
    check_config(cfg)  # every knob's type and range, before any work (and before the heavy imports)
    import lightning as L
    import torch

    from laser.runs.results import results_payload, write_json_atomically

    cfg = prepare_output_dir(cfg, output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    parts = build(cfg, output_dir)
    module, datamodule = parts["module"], parts["datamodule"]
    trainer = make_trainer(cfg, output_dir)
    started = time.perf_counter()
    try:
        if cfg.get("resume"):
            log.info("resuming %s from %s", output_dir, output_dir / CHECKPOINT)
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(output_dir / CHECKPOINT))
        else:
            trainer.validate(module, datamodule=datamodule, verbose=False)  # iteration 0: before training
            trainer.fit(module, datamodule=datamodule)
    finally:
        finish_wandb()
    pool = parts["rm_pool"]
    done = len(module.tracker.records) - 1  # iteration 0 is the evaluation before training
    payload = results_payload(
        seed=cfg.seed, wall_seconds=module.wall_seconds(), config=OmegaConf.to_container(cfg),
        tracker=module.tracker, all_names=pool.names, rm_calls=module.last_rm_calls,
        complete=done >= cfg.laser.iterations, method=method_label(cfg, parts["selector"]),
        task=parts["task"].name, primary_metric=parts["task"].primary_metric,
        skipped_rows=parts["task"].skipped_rows, rm_tokens=module.last_rm_tokens,
        generated_tokens=module.last_generated_tokens,
    )
    if trainer.is_global_zero:
        write_json_atomically(output_dir / "results.json", payload)
        (output_dir / "run.lock").unlink(missing_ok=True)
        log.info("done in %.1fs: %s -> %s", time.perf_counter() - started, payload["final"],
                 output_dir / "results.json")
    return payload


def method_label(cfg: DictConfig, selector) -> str:
    """The results-table row a run belongs to: `method_name` (the bandit choice by default), with
    single-RM runs named by their RM (`single:<rm>`) since `bandit=single` covers several rows."""
    label = str(cfg.get("method_name") or type(selector).__name__)
    if label.startswith("single") and hasattr(selector, "fixed_arm"):
        return f"single:{selector.arm_names[selector.fixed_arm]}"
    return label


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_job(run, cfg)


def run_job(job, cfg: DictConfig) -> float | None:
    """Run `job(cfg, output_dir)` in Hydra's output folder; bad input exits 2 with one line. Returns
    the primary metric, which a Hydra sweeper can optimise."""
    from hydra.core.hydra_config import HydraConfig

    try:
        payload = job(cfg, Path(HydraConfig.get().runtime.output_dir))
    except LaserConfigError as error:
        print(f"laser: error: {error}", file=sys.stderr)
        sys.exit(2)
    return payload["final"].get(payload.get("primary_metric", "test/accuracy"))


def finish_wandb() -> None:
    """Close the W&B run (if one is open) so the next job of a multirun sweep starts its own."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

if __name__ == "__main__":
    check_group_choices(CONF_DIR)
    main()
