"""Validate the composed config before any work: types and ranges of every knob a user types.

One rule per dotted key (`RULES`: predicate, what is valid), used by the entry points on the composed
config and by the classes that take those knobs. The first broken rule becomes one line:
`config laser.num_samples=1: must be an integer >= 2`. Choices of config groups (bandit=..., task=...)
are checked on the command line, before Hydra composes anything (`check_group_choices`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from laser.errors import LaserConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # the config groups `python -m laser.run` composes


def _integer(minimum: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _number(low: float, high: float = float("inf"), low_open: bool = False, high_open: bool = False):
    def check(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return check


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda v: v in choices


# One rule per key: (predicate, what is valid). The entry points check the composed config against it
# (`check_config`); the classes that take these knobs check their arguments against the same rules
# (`check_values`), so a knob has one range wherever it is checked.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_integer(0), "an integer >= 0"),
    "num_threads": (_optional(_integer(1)), "null or an integer >= 1"),
    "stop_after_iteration": (_optional(_integer(1)), "null or an integer >= 1"),
    "laser.iterations": (_integer(1), "an integer >= 1"),
    "laser.num_samples": (_integer(2), "an integer >= 2 (pairs need two responses)"),
    "laser.pairs_per_prompt": (_integer(1), "an integer >= 1"),
    "laser.micro_batch_size": (_optional(_integer(1)), "null (all sequences at once) or an integer >= 1"),
    "loss.beta": (_number(0, low_open=True), "a number > 0"),
    "loss.label_smoothing": (_number(0, 0.5, high_open=True), "a number in [0, 0.5)"),
    "loss.nll_weight": (_number(0), "a number >= 0"),
    "laser.lr": (_number(0, low_open=True), "a number > 0"),
    "laser.weight_decay": (_number(0), "a number >= 0"),
    "laser.max_grad_norm": (_number(0), "a number >= 0 (0 disables clipping)"),
    "laser.log_samples_every": (_integer(0), "an integer >= 0 (0 disables)"),
    "laser.counterfactuals": (lambda v: isinstance(v, bool), "true or false"),
    "laser.on_rm_fault": (_one_of("skip", "penalise"), "skip or penalise"),
    "laser.on_no_pairs": (_one_of("skip", "neutral", "penalise"), "skip, neutral or penalise"),
    "data.batch_size": (_integer(1), "an integer >= 1"),
    "data.steps_per_iteration": (_optional(_integer(1)),
                                  "null (one pass over the training set) or an integer >= 1"),
    "data.eval_batch_size": (_integer(1), "an integer >= 1"),
    "data.eval_limit": (_optional(_integer(1)), "null or an integer >= 1"),
    "policy.temperature": (_number(0, low_open=True), "a number > 0"),
    "policy.top_p": (_number(0, 1, low_open=True), "a number in (0, 1]"),
    "policy.max_new_tokens": (_integer(1), "an integer >= 1"),
    "policy.prompts_per_generate": (_optional(_integer(1)), "null or an integer >= 1"),
    "policy.max_prompt_tokens": (_optional(_integer(1)), "null (the model's window) or an integer >= 1"),
    "policy.truncation_side": (_one_of("left", "middle"), "left or middle"),
    "policy.chat_template": (lambda v: isinstance(v, bool), "true or false"),
    "policy.dtype": (_one_of("float32", "fp32", "bfloat16", "bf16", "float16", "fp16"),
                     "one of float32, bfloat16, float16"),
    "policy.generation_backend": (_one_of("hf", "vllm"), "hf or vllm"),
    "policy.activation_checkpointing": (lambda v: isinstance(v, bool), "true or false"),
    "reward_normaliser.low_quantile": (_number(0, 1), "a number in [0, 1]"),
    "reward_normaliser.high_quantile": (_number(0, 1), "a number in [0, 1]"),
    "selector_reward.normaliser.low_quantile": (_number(0, 1), "a number in [0, 1]"),
    "selector_reward.normaliser.high_quantile": (_number(0, 1), "a number in [0, 1]"),
    "selector_reward.holdout_every": (lambda v: v == 0 or _integer(2)(v),
                                      "0 (hold nothing back) or an integer >= 2 (every k-th prompt)"),
    "selector_reward.window": (_integer(2), "an integer >= 2"),
    "selector_reward.ridge_lambda": (_number(0, low_open=True), "a number > 0"),
    "selector_reward.term": (_one_of("total", "dpo"), "total (DPO + nll_weight * NLL, the paper) or dpo"),
    "bandit.granularity": (_one_of("batch", "instance"), "batch or instance"),
    "bandit.alpha": (_number(0), "a number >= 0"),
    "context.dim": (_optional(_integer(1)), "null or an integer >= 1"),
    "context.buckets": (_integer(1), "an integer >= 1"),
    "plan.device_memory_gb": (_optional(_number(0, low_open=True)), "null (the visible GPU, else 80) or a number > 0"),
    "plan.reserve_gb": (_number(0), "a number >= 0"),
    "plan.prompt_tokens": (_optional(_integer(1)), "null (policy.max_prompt_tokens) or an integer >= 1"),
    "plan.check": (lambda v: isinstance(v, bool), "true or false"),
    # conf/bestofn.yaml (python -m laser.bestofn)
    "num_samples": (_integer(2), "an integer >= 2 (best-of-n needs answers to choose from)"),
    "batch_size": (_integer(1), "an integer >= 1"),
}


# Knobs that moved to another key: the old key fails with one line naming the new one.
MOVED = {f"laser.{name}": f"loss.{name}" for name in ("beta", "label_smoothing", "nll_weight")}


def moved_knob(key: str, value: Any) -> str | None:
    """The one-line message for a knob that moved (`laser.beta=0.2` -> use `loss.beta=0.2`), or None."""
    if key.lstrip("+~") not in MOVED:
        return None
    new = MOVED[key.lstrip("+~")]
    return (f"config {key.lstrip('+~')}={value} moved: the loss is its own config group (conf/loss/), "
            f"set {new}={value} instead")


def check_values(group: str, **values: Any) -> None:
    """Raise the one-line `LaserConfigError` of the first `<group>.<name>` value that breaks its rule,
    e.g. `check_values("laser", num_samples=1)` -> `config laser.num_samples=1: must be an integer >= 2 ...`."""
    for name, value in values.items():
        _check(f"{group}.{name}", value)


def _check(key: str, value: Any) -> None:
    valid, description = RULES[key]
    if not valid(value):
        raise LaserConfigError(f"config {key}={value!r}: must be {description}")


def check_config(cfg: DictConfig) -> None:
    """Raise a one-line LaserConfigError for the first knob outside its valid range."""
    missing = object()
    for key in MOVED:  # an experiment file or `+laser.beta=` that still sets an old key
        value = OmegaConf.select(cfg, key, default=missing)
        if value is not missing:
            raise LaserConfigError(moved_knob(key, value))
    for key in RULES:
        value = OmegaConf.select(cfg, key, default=missing)
        if value is not missing:  # else the knob does not exist in this composition (another policy or bandit)
            _check(key, value)
    for prefix in ("reward_normaliser", "selector_reward.normaliser"):
        low = OmegaConf.select(cfg, f"{prefix}.low_quantile", default=0.0)
        high = OmegaConf.select(cfg, f"{prefix}.high_quantile", default=1.0)
        if low >= high:
            raise LaserConfigError(f"config {prefix}.low_quantile={low} must be below high_quantile={high}")
    strategy = str(OmegaConf.select(cfg, "trainer.strategy._target_", default="") or "")
    if strategy.endswith("LaserFSDPStrategy") and OmegaConf.select(cfg, "policy.generation_backend") == "vllm":
        raise LaserConfigError("config trainer=fsdp with policy.generation_backend=vllm: vLLM needs the whole "
                               "adapter on each rank; use trainer=ddp with vllm, or generation_backend=hf with fsdp")
    models = OmegaConf.select(cfg, "rm_pool.models", default=None)
    if models is not None and not [name for name, rm in models.items() if rm is not None]:
        raise LaserConfigError("config rm_pool.models is empty: the pool needs at least one RM (K >= 1)")


def unknown_group_choice(argv: list[str], conf_dir: Path) -> str | None:
    """One line for the first command-line override that picks a config-group choice with no yaml file
    in `conf_dir` (`bandit=nope`, `+experiment=nope`, a sweep `bandit=linucb,nope`) or sets a knob that
    moved (`laser.beta=0.2`: Hydra would say only that the key is not in the struct), or None.

    Hydra's own message for this is a dozen lines and exit code 1; laser's bad input is one line and
    exit code 2. `hydra/...` groups (launchers and sweepers come from plugins too) are left to Hydra."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = OverridesParser.create().parse_overrides(get_args_parser().parse_args(argv).overrides)
    except (Exception, SystemExit):  # malformed command line: Hydra reports it
        return None
    for override in overrides:
        group = override.key_or_group
        if not override.is_delete() and moved_knob(group, "") is not None:
            return moved_knob(group, (override.input_line or "=").split("=", 1)[1])
        folder = conf_dir / group
        if group.startswith("hydra") or override.is_delete() or not folder.is_dir():
            continue
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        choices = sorted(path.stem for path in folder.glob("*.yaml"))
        for value in values:
            if value is not None and str(value) not in choices:
                return f"{group}={value}: no such choice in conf/{group}/; choose one of {', '.join(choices)}"
    return None


def check_group_choices(conf_dir: Path) -> None:
    """Exit 2 with one line if the command line picks a config-group choice that does not exist."""
    problem = unknown_group_choice(sys.argv[1:], conf_dir)
    if problem:
        print(f"laser: error: {problem}", file=sys.stderr)
        sys.exit(2)
