"""Which model a policy config names, and loading it: a hub id or local folder, a model built from a PyPI
wheel (`prebuilt`), or a small Llama built locally for the task (`tiny`); then the supervised warm start,
cached on disk. `load_policy` is the `_target_` of every conf/policy/*.yaml."""

from __future__ import annotations

from laser.errors import LaserConfigError
from laser.policy.policy import Policy
from laser.tasks.base import Task


def load_policy(
    model_name_or_path: str | None = None,
    task: Task | None = None,
    tiny: dict | None = None,
    warm_start: dict | None = None,
    cache_dir: str = "~/.cache/laser",
    prebuilt: str | None = None,
    **policy_kwargs,
) -> Policy:
    """The policy a config names: a hub id or local folder, a model built from a PyPI wheel
    (`prebuilt`), or (with `tiny`) a small Llama built locally for the task; then, if `warm_start.steps > 0`, a supervised warm start on the task's
    train split, cached on disk so the next run skips it."""
    return Policy(policy_folder(model_name_or_path, task, tiny, warm_start, cache_dir, prebuilt), **policy_kwargs)


def policy_folder(
    model_name_or_path: str | None = None,
    task: Task | None = None,
    tiny: dict | None = None,
    warm_start: dict | None = None,
    cache_dir: str = "~/.cache/laser",
    prebuilt: str | None = None,
) -> str:
    """The model `load_policy` loads (a hub id or a folder, built and warm-started first when the config
    says so, cached): what on-policy data is sampled from (laser/rewards/onpolicy_judges.py)."""
    from laser.policy.warm_start import warm_start as run_warm_start
    from laser.tiny import build_tiny_causal_lm

    if prebuilt == "smollm2_135m":
        from laser.tiny import build_smollm2_135m

        model_name_or_path = build_smollm2_135m(cache_dir)
    elif prebuilt is not None:
        raise LaserConfigError(f"policy.prebuilt={prebuilt!r}; choose smollm2_135m or null")
    if tiny:
        if task is None:
            raise LaserConfigError("policy.tiny builds a model for a task, but no task was given")
        model_name_or_path = build_tiny_causal_lm(cache_dir, task, **tiny)
    if not model_name_or_path:
        raise LaserConfigError("policy.model_name_or_path is empty: give a hub id or a local model folder")
    if warm_start and warm_start.get("steps", 0) > 0:
        if task is None:
            raise LaserConfigError("policy.warm_start needs a task to train on")
        model_name_or_path = run_warm_start(model_name_or_path, task, cache_dir, **warm_start)
    return model_name_or_path
