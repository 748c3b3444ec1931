"""What a checkpoint holds of a run beyond Lightning's own (optimiser, loop counters), so a resumed run
continues exactly: the adapter and its merge history (the frozen base is rebuilt from its path, not
saved), the selector, the selector reward (its normaliser and baseline), values the module keeps (the
last evaluation, the wall time so far); and, per rank, what differs between ranks: the global random
streams, the RM pool's counters and noise streams, and the iteration tracker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from laser.distributed.processes import from_every_rank, own_entry
from laser.errors import LaserConfigError
from laser.guard.dev_rollback import DevRollback
from laser.policy.policy import Policy
from laser.rewards.pool import RewardModelPool
from laser.runs.results import IterationTracker
from laser.runs.rng import get_rng_state
from laser.selection.base import Selector
from laser.selection.selector_reward.base import SelectorReward


@dataclass
class Resumable:
    """The parts of a run whose state a checkpoint holds (each has `state_dict` / `load_state_dict`)."""

    policy: Policy  # its adapter and merge history
    selector: Selector
    selector_reward: SelectorReward
    rm_pool: RewardModelPool  # per rank
    tracker: IterationTracker  # per rank
    guard: DevRollback | None = None  # its best dev accuracy and resting categories


def checkpoint_state(run: Resumable, trainer, **values: Any) -> dict[str, Any]:
    """The `laser` entry of a checkpoint: `run`'s states, and `values` as they are (e.g. `last_eval`,
    `wall_seconds`). A collective on several ranks (`trainer` says how many)."""
    state = {
        "adapter": run.policy.adapter_state_dict(),
        "merged_adapters": run.policy.merged_adapters,
        "selector": run.selector.state_dict(),
        "selector_reward": run.selector_reward.state_dict(),
        "guard": None if run.guard is None else run.guard.state_dict(),
        **values,
    }
    # what differs between ranks (random and noise streams, own counters): rank 0's, and every rank's
    local = {"rng": get_rng_state(), "rm_pool": run.rm_pool.state_dict(), "tracker": run.tracker.state_dict()}
    state.update(local, per_rank=from_every_rank(trainer, local))
    return state


def restore_checkpoint_state(run: Resumable, state: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """Load `checkpoint_state` into `run`'s selector, selector reward, RM pool and tracker; returns the state
    of process `rank` of `world_size` (rank 0's when the checkpoint was written by another number of
    ranks), whose policy weights (`restore_policy_weights`), `rng` and values the caller takes over."""
    state = {**state, **(own_entry(state.get("per_rank"), rank, world_size) or {})}
    run.selector.load_state_dict(state["selector"])
    run.selector_reward.load_state_dict(state["selector_reward"])
    run.rm_pool.load_state_dict(state["rm_pool"])
    run.tracker.load_state_dict(state["tracker"])
    if run.guard is not None:
        if state.get("guard") is None:
            raise LaserConfigError("this run has guard=... but its checkpoint was written without one; resume "
                                   "it with the guard it ran with (its .hydra/config.yaml), or start a new run")
        run.guard.load_state_dict(state["guard"])
    return state


def restore_policy_weights(policy: Policy, state: dict[str, Any]) -> None:
    """Replay the checkpoint's reference refreshes into the base weights, then load the live adapter. Call
    it once the policy sits on its training device: the merges then run where the original ones ran (a
    GPU's matmul rounds differently from a CPU's, and resumed runs are bitwise equal to uninterrupted ones)."""
    policy.replay_merges(state["merged_adapters"])
    policy.load_adapter_state_dict(state["adapter"])
