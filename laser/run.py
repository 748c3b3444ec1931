"""Entry point: `python -m laser.run [overrides]` (see conf/config.yaml).

Check every knob, claim the run folder (`laser.runs.folder`), seed, build every component from the
config with `instantiate`, evaluate before training (iteration 0), fit for `laser.iterations`
iterations (`laser.step.module.LaserModule`: the LASeR step), write `results.json`, finish the
logger. With `resume=<run folder>` the run continues from its last checkpoint, with the config it
started with.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from laser.config.checks import CONF_DIR, check_config, check_group_choices
from laser.config.instantiate import instantiate
from laser.runs.folder import CHECKPOINT, hydra_subdir, prepare_output_dir, release_output_dir, run_job

log = logging.getLogger("laser")
# Several processes: Lightning suggests sync_dist for every epoch-level metric. laser logs figures that
# are already the same on every rank (evaluation on gathered answers, counts summed over ranks) or
# deliberately per process (phase times), so the suggestion is noise here.
warnings.filterwarnings("ignore", message=r"It is recommended to use `self\.log\(", category=UserWarning)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_job(run, cfg)


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """One LASeR job; returns the results payload (also written to `results.json`)."""
    check_config(cfg)  # every knob's type and range, before any work (and before the heavy imports)
    import lightning as L
    import torch

    from laser.runs.files import write_json_atomically

    cfg = prepare_output_dir(cfg, output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    parts = build(cfg, output_dir)
    module, datamodule = parts["module"], parts["datamodule"]
    trainer = make_trainer(cfg, output_dir)
    log_run_config(trainer.loggers, cfg)
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
    payload = results(cfg, parts)
    if trainer.is_global_zero:
        write_json_atomically(output_dir / "results.json", payload)
        release_output_dir(output_dir)
        log.info("done in %.1fs: %s -> %s", time.perf_counter() - started, payload["final"],
                 output_dir / "results.json")
    return payload


def build(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Instantiate task, RM pool, selector, context, selector reward, loss, guard, data, policy and the LASeR module.

    The policy comes last: loading it can take minutes, so every cheap check fails before it."""
    from laser.step.module import LaserModule
    from laser.step.settings import StepSettings

    laser_cfg = OmegaConf.to_container(cfg.laser)
    laser_cfg.pop("iterations")  # the trainer's; the rest are the step's knobs
    task = instantiate(cfg.task)
    rm_pool = instantiate(cfg.rm_pool, _convert_="all")
    selector = instantiate(cfg.bandit, num_arms=len(rm_pool), arm_names=rm_pool.names, _convert_="all")
    context = instantiate(cfg.context)
    selector_reward = instantiate(cfg.selector_reward)
    loss = instantiate(cfg.loss)
    guard = instantiate(cfg.guard) if cfg.get("guard") else None  # its dev prompts are never trained on
    held_out = guard.hold_out(task.train_examples()) if guard is not None else set()
    datamodule = instantiate(cfg.data, task=task, held_out=held_out)
    policy = instantiate(cfg.policy, task=task, _convert_="all")
    module = LaserModule(policy, rm_pool, selector, task, selector_reward, loss=loss, context=context,
                         settings=StepSettings(**laser_cfg), output_dir=str(output_dir),
                         stop_after_iteration=cfg.get("stop_after_iteration"), guard=guard)
    return {"task": task, "module": module, "datamodule": datamodule, "rm_pool": rm_pool, "selector": selector}


def make_trainer(cfg: DictConfig, output_dir: Path):
    """The Lightning trainer of `cfg.trainer`, with the configured loggers, a checkpoint after every
    iteration, and atomic checkpoint writes."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from laser.runs.checkpoint_io import AtomicCheckpointIO

    loggers = []
    for logger_cfg in (cfg.get("logger") or {}).values():
        if cfg.get("resume") and logger_cfg._target_.endswith("CSVLogger"):
            # A resumed session logs to its own file: the CSV logger would rewrite the earlier one.
            logger_cfg = OmegaConf.merge(logger_cfg, {"version": "resumed-" + hydra_subdir(cfg.resume)[-19:]})
        if logger_cfg._target_.endswith("WandbLogger") and not logger_cfg.get("name"):
            logger_cfg = OmegaConf.merge(logger_cfg, {"name": _job_name()})  # e.g. "bandit=random,seed=3"
        loggers.append(instantiate(logger_cfg))
    checkpoints = ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="epoch-{epoch}",
                                  auto_insert_metric_name=False,
                                  save_last=True, save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True)
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=[checkpoints], plugins=[AtomicCheckpointIO()])


def log_run_config(loggers: list, cfg: DictConfig) -> None:
    """Give every logger the job's whole config and its provenance (`environment`: commit, versions,
    machine) as the run's hyperparameters: the W&B run config, the CSV logger's hparams.yaml. Two runs
    on two machines are then told apart in W&B as in `results.json`."""
    from laser.runs.provenance import environment

    if not loggers:
        return
    hyperparameters = {**OmegaConf.to_container(cfg, resolve=True), "environment": environment()}
    for logger in loggers:
        logger.log_hyperparams(hyperparameters)  # Lightning's loggers write on rank 0 only


def results(cfg: DictConfig, parts: dict[str, Any]) -> dict[str, Any]:
    """The `results.json` payload of a fitted run (the contract in the README)."""
    from laser.runs.provenance import environment
    from laser.runs.results import method_label, results_payload

    module, pool, task = parts["module"], parts["rm_pool"], parts["task"]
    done = len(module.tracker.records) - 1  # iteration 0 is the evaluation before training
    return results_payload(
        seed=cfg.seed, wall_seconds=module.wall_seconds(), config=OmegaConf.to_container(cfg),
        tracker=module.tracker, all_names=pool.names, rm_calls=module.last_rm_calls,
        complete=done >= cfg.laser.iterations, method=method_label(cfg.get("method_name"), parts["selector"]),
        task=task.name, primary_metric=task.primary_metric, skipped_rows=task.skipped_rows,
        rm_tokens=module.last_rm_tokens, generated_tokens=module.last_generated_tokens,
        data=parts["datamodule"].iteration_plan(), environment=environment(),
    )


def _job_name() -> str | None:
    """The job's overrides as a name (a sweep's jobs differ by exactly these), or None."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().job.override_dirname or None
    except (ValueError, AttributeError):
        return None


def finish_wandb() -> None:
    """Close the W&B run (if one is open) so the next job of a multirun sweep starts its own."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


if __name__ == "__main__":
    check_group_choices(CONF_DIR)
    main()
