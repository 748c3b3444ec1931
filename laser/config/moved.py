"""Classes and functions that moved: a run folder saved before a move names the old path as a `_target_` in
its config.yaml, and `resume=` rebuilds the run from that file. `follow_moves` rewrites those targets to
where the code lives now (checkpoints hold state dicts, never class paths), so a move needs one line here
and no alias left behind in the old place."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

# old target (or old module prefix, ending in '.') -> where it lives now
MOVED = {
    "laser.selection.rewards.": "laser.selection.selector_reward.",  # renamed to match its config group
    "laser.policy.policy.load_policy": "laser.policy.loading.load_policy",  # loading left policy.py
}


def current_target(target: str) -> str:
    """Where `target` lives now (itself if it never moved)."""
    for old, new in MOVED.items():
        if target == old or (old.endswith(".") and target.startswith(old)):
            return new + target[len(old):]
    return target


def follow_moves(config: DictConfig) -> DictConfig:
    """`config` (a saved run config) with every `_target_` that names a moved path rewritten."""
    return OmegaConf.create(_rewritten(OmegaConf.to_container(config)))


def _rewritten(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: current_target(v) if k == "_target_" and isinstance(v, str) else _rewritten(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewritten(v) for v in node]
    return node
