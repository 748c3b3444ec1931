"""What a checkpoint holds of a `LaserModule` beyond Lightning's own (optimiser, loop counters), so a
resumed run continues exactly: the adapter and its merge history (the frozen base is rebuilt from its
path, not saved), the selector, the selector reward (its normaliser and baseline), the last evaluation and the wall time so far; and,
per rank, what differs between ranks: the global random streams, the RM pool's counters and noise
streams, and the iteration tracker.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from laser.distributed.processes import from_every_rank, own_entry
from laser.runs.rng import get_rng_state


def module_state(module: L.LightningModule) -> dict[str, Any]:
    """The `laser` entry of a checkpoint of `module` (a LaserModule): a collective on several ranks."""
    state = {
        "adapter": module.policy.adapter_state_dict(),
        "merged_adapters": module.policy.merged_adapters,
        "selector": module.selector.state_dict(),
        "selector_reward": module.selector_reward.state_dict(),
        "last_eval": module.last_eval,
        "wall_seconds": module.wall_seconds(),
    }
    # what differs between ranks (random and noise streams, own counters): rank 0's, and every rank's
    local = {"rng": get_rng_state(), "rm_pool": module.rm_pool.state_dict(), "tracker": module.tracker.state_dict()}
    state.update(local, per_rank=from_every_rank(module.trainer, local))
    return state


def restore_module_state(module: L.LightningModule, state: dict[str, Any]) -> dict[str, Any]:
    """Load `module_state` into the module's selector, selector reward, RM pool and tracker; returns this
    rank's state (rank 0's when the checkpoint was written by another number of ranks), whose policy
    weights (`restore_policy_weights`), `rng`, `last_eval` and `wall_seconds` the module takes over itself."""
    state = {**state, **(own_entry(state.get("per_rank"), module.global_rank, module.trainer.world_size) or {})}
    module.selector.load_state_dict(state["selector"])
    module.selector_reward.load_state_dict(state["selector_reward"])
    module.rm_pool.load_state_dict(state["rm_pool"])
    module.tracker.load_state_dict(state["tracker"])
    return state


def restore_policy_weights(module: L.LightningModule, state: dict[str, Any]) -> None:
    """Replay the checkpoint's reference refreshes into the base weights, then load the live adapter. Call
    it once the policy sits on its training device: the merges then run where the original ones ran (a
    GPU's matmul rounds differently from a CPU's, and resumed runs are bitwise equal to uninterrupted ones)."""
    module.policy.replay_merges(state["merged_adapters"])
    module.policy.load_adapter_state_dict(state["adapter"])
