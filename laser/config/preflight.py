"""Before any training: every model the run will need exists (a missing model fails in seconds, not hours).

RMs load lazily (a pool of four 7B RMs costs nothing until the bandit picks one), so without this check a
run with an unreachable RM would train until the bandit first chose it, which with `placement=offload`
can be hours in. `check_models` walks the composed config for every model reference (the policy, every
RM of the pool, judges, the context encoder) and, without loading any weights, checks:

- a local folder: it exists, has a `config.json`, tokenizer files and weights (safetensors, or `.bin`);
- a hub id: its `config.json` is in the local Hugging Face cache, or the hub answers for it (one HEAD
  request per model, all at once, each bounded by `timeout_s`).

Every missing model is named in one line (`LaserConfigError`, exit code 2 from the entry points).

`check_memory` then runs the memory plan (`laser.plan`) for a GPU run: a config whose step cannot fit
the device is refused in one line naming the phase, its figure and the knob that makes it fit, before
any weights load; `rm_pool.placement=auto` becomes what the plan chose. A CPU run never plans.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from omegaconf import DictConfig, OmegaConf

from laser.errors import LaserConfigError

log = logging.getLogger("laser")

# Config keys that name a model (hub id or folder) and what the run loads from it.
MODEL_KEYS = {"model_name_or_path": "model", "reference_name_or_path": "weights",
              "tokenizer_name_or_path": "tokenizer"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")
WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json")


def model_references(cfg: DictConfig | dict) -> Iterator[tuple[str, str, str]]:
    """(dotted config key, hub id or folder, what is loaded from it) for every model the config names:
    "model" (weights and tokenizer), "weights" (a reference model, read with another's tokenizer, or a
    model whose tokenizer comes from its own `tokenizer_name_or_path`) or "tokenizer".

    The sentence encoder is `context.model_name_or_path`, a key only `context=sentence_encoder` has, so
    it counts only where it is used."""
    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    yield from _walk(node, "")


def _walk(node: Any, prefix: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _walk(item, f"{prefix}{index}.")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "hydra":
            continue
        if key in MODEL_KEYS and isinstance(value, str) and value:
            kind = MODEL_KEYS[key]
            if kind == "model" and node.get("tokenizer_name_or_path"):
                kind = "weights"
            yield f"{prefix}{key}", value, kind
        else:
            yield from _walk(value, f"{prefix}{key}.")


def looks_local(name_or_path: str) -> bool:
    """A path rather than a hub id: it starts with '/', '.' or '~', or exists."""
    return name_or_path.startswith(("/", ".", "~")) or os.path.exists(os.path.expanduser(name_or_path))


def local_problem(path: str, kind: str) -> str | None:
    """What a local folder lacks for `kind` ("model", "weights", "tokenizer"), or None."""
    folder = os.path.expanduser(path)
    if not os.path.isdir(folder):
        return "no such folder"
    names = set(os.listdir(folder))
    missing = []
    if kind != "tokenizer" and "config.json" not in names:
        missing.append("config.json")
    if kind != "weights" and not names.intersection(TOKENIZER_FILES):
        missing.append("tokenizer files")
    if kind != "tokenizer" and not any(name.endswith(WEIGHT_SUFFIXES) for name in names):
        missing.append("weights (*.safetensors)")
    return f"no {', no '.join(missing)}" if missing else None


def hub_problem(repo_id: str, timeout_s: float) -> str | None:
    """Why a hub id cannot be loaded (not cached, hub unreachable or refusing), or None if it can."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return None
    except Exception as error:  # a malformed id: say so rather than guess
        return f"not a valid hub id ({_first_line(error)})"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "not in the local Hugging Face cache (HF_HUB_OFFLINE is set)"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=timeout_s)
    except Exception as error:
        return f"not in the local Hugging Face cache and the hub did not serve it ({_first_line(error)})"
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:160]


def check_models(cfg: DictConfig | dict, timeout_s: float = 10.0) -> int:
    """Raise one `LaserConfigError` naming every model the run needs that is missing; returns how many
    references were checked. Hub lookups run in parallel, so the check takes at most ~`timeout_s`."""
    references = list(model_references(cfg))
    hub_ids = sorted({value for _, value, _ in references if not looks_local(value)})
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(hub_ids)))) as pool:
        hub = dict(zip(hub_ids, pool.map(lambda repo: hub_problem(repo, timeout_s), hub_ids), strict=True))
    problems: dict[str, list[str]] = {}  # problem -> the references that have it (one line, grouped)
    for key, value, kind in references:
        problem = local_problem(value, kind) if looks_local(value) else hub[value]
        if problem:
            problems.setdefault(problem, []).append(f"{key}={value}")
    if problems:
        count = sum(len(names) for names in problems.values())
        found = "; ".join(f"{', '.join(names)}: {problem}" for problem, names in problems.items())
        raise LaserConfigError(f"{count} model(s) the run needs cannot be loaded: {found}. Give local folders "
                               "(config.json, tokenizer, safetensors) or cache them first (huggingface-cli download <id>)")
    return len(references)


def is_gpu_run(cfg: DictConfig) -> bool:
    """The policy or the RMs run on an accelerator: trainer.accelerator gpu/cuda (or auto with a GPU
    visible), or rm_pool.device cuda."""
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="cpu"))
    if accelerator in ("gpu", "cuda") or str(OmegaConf.select(cfg, "rm_pool.device", default="cpu")).startswith("cuda"):
        return True
    if accelerator == "auto":
        import torch

        return torch.cuda.is_available()
    return False


def check_memory(cfg: DictConfig) -> DictConfig:
    """GPU runs of the LASeR step: refuse a config whose memory plan does not fit (one line: the phase, its
    peak, the budget and the first knob that fits), and resolve `rm_pool.placement=auto` by the plan.
    Returns `cfg` (placement resolved in place). A CPU run, another entry point (no `laser` block) or
    `plan.check=false` plans nothing, and `auto` becomes offload (the pool's own default)."""
    planned = (is_gpu_run(cfg) and OmegaConf.select(cfg, "laser") is not None
               and OmegaConf.select(cfg, "plan.check", default=True))
    plan = _memory_plan(cfg) if planned else None
    if OmegaConf.select(cfg, "rm_pool.placement", default=None) == "auto":
        cfg.rm_pool.placement = plan.placement if plan is not None else "offload"
        log.info("rm_pool.placement=auto -> %s%s", cfg.rm_pool.placement, "" if plan else " (no memory plan)")
    if plan is not None and not plan.fits:
        if "fsdp" in str(OmegaConf.select(cfg, "trainer.strategy", default="")).lower():
            log.warning("%s (the plan holds every weight on one GPU; trainer=fsdp shards them, so it is not "
                        "refused)", _refusal(plan))
            return cfg
        raise LaserConfigError(_refusal(plan))
    return cfg


def _memory_plan(cfg: DictConfig):
    """The config's memory plan, or None (with a warning) when a model's shape cannot be traced: the plan
    advises, so a model it cannot read never blocks a run."""
    import time

    from laser.plan.inputs import plan_inputs
    from laser.plan.planner import plan_memory
    from laser.plan.table import verdict

    started = time.perf_counter()
    try:
        plan = plan_memory(plan_inputs(cfg))
    except Exception as error:  # an architecture fake tensors cannot trace, a shape not found
        log.warning("memory plan skipped (%s: %s); plan.check=false silences this",
                    type(error).__name__, _first_line(error))
        return None
    log.info("memory plan (%.0f s): %s", time.perf_counter() - started, verdict(plan))
    return plan


def _refusal(plan) -> str:
    """One line: the first phase over the budget, its peak, the budget, and the knob that makes it fit."""
    from laser.plan.advice import advise
    from laser.plan.table import gib

    first, *others = plan.failing()
    advice = advise(plan, first_only=True)
    knobs = [knobs[0].split(" (")[0] for _, knobs in advice if knobs]
    if advice and advice[-1][1]:  # the first phase still over after offloading has a knob too
        fix = "knob: " + ", then ".join(knobs)
    else:
        stuck = advice[-1][0] if advice else first.phase
        fix = f"no knob makes {stuck} fit{' after ' + knobs[0] if knobs else ''} (a larger GPU, or trainer=fsdp)"
    also = f" (over too: {', '.join(f'{r.phase} {gib(r.peak)} GiB' for r in others)})" if others else ""
    return (f"memory plan: {first.phase} needs {gib(first.peak)} GiB, over the {gib(plan.inputs.usable)} GiB "
            f"usable of {plan.inputs.device_gb:g} GB ({plan.inputs.device_source}){also}; {fix}. "
            "`python -m laser.plan <same overrides>` prints every phase and knob; plan.check=false skips this check")
