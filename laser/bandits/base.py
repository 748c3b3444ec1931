"""The interface every RM selector implements: bandits and baselines alike.

A selector sees a context vector for the batch (or one per instance), chooses which RMs score the
batch (`Selection.arms`), turns the chosen RMs' scores into one score per response (`combine`), and
learns from a reward in [0, 1] (`update`). Baselines (a fixed RM, a random RM, ensembles) are
selectors too, so a sweep over the `bandit` config group yields every row of a results table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Selection:
    """Which RMs score this batch. `arms` are indices into the RM pool; `propensity` is the probability
    with which the selector chose this selection, when it has one (None for deterministic rules)."""

    arms: tuple[int, ...]
    propensity: float | None = None
    info: dict[str, Any] | None = None  # per-arm diagnostics worth logging (estimates, bonuses)

    @property
    def arm(self) -> int:
        """The single chosen arm (selectors that pick one RM)."""
        if len(self.arms) != 1:
            raise ValueError(f"selection has {len(self.arms)} arms, not one: {self.arms}")
        return self.arms[0]


class Selector(ABC):
    """Chooses RMs from a pool of `num_arms` and learns from rewards in [0, 1]."""

    def __init__(self, num_arms: int, arm_names: list[str] | None = None) -> None:
        if num_arms < 1:
            raise ValueError(f"num_arms must be >= 1, got {num_arms}")
        self.num_arms = num_arms
        self.arm_names = list(arm_names) if arm_names is not None else [f"rm{k}" for k in range(num_arms)]

    @abstractmethod
    def select(self, context: torch.Tensor) -> Selection:
        """Choose RMs for a batch whose context is a 1-D vector."""

    def update(self, selection: Selection, context: torch.Tensor, reward: float) -> None:  # noqa: B027
        """Learn from the reward (in [0, 1]) that `selection` earned in `context`. Default: no learning."""

    def combine(self, scores: dict[int, torch.Tensor]) -> torch.Tensor:
        """One score per response from the chosen arms' scores (arm index -> tensor). Default: the
        single chosen arm's scores unchanged."""
        if len(scores) != 1:
            raise ValueError(f"{type(self).__name__} combines exactly one arm's scores, got {sorted(scores)}")
        return next(iter(scores.values()))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this selector left off (checkpointed)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore from `state_dict()`."""
