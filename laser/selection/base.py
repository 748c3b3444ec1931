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

from laser.config.checks import check_values
from laser.errors import LaserConfigError


def check_at_least(name: str, value: float, minimum: float = 0) -> None:
    """Reject a selector option below its minimum (e.g. a negative exploration weight), naming it."""
    if value < minimum:
        raise LaserConfigError(f"{name} must be >= {minimum}, got {value}")


def check_rate(name: str, value: float) -> None:
    """Reject a discount or mixing rate outside (0, 1], naming it."""
    if not 0.0 < value <= 1.0:
        raise LaserConfigError(f"{name} must be in (0, 1], got {value}")


def check_reward(owner: str, reward: float) -> None:
    """Reject a reward outside [0, 1] (NaN included), naming the selector."""
    if not 0.0 <= reward <= 1.0:
        raise ValueError(f"{owner} reward must be in [0, 1] (normalise it first), got {reward}")


def check_feedback(owner: str, num_arms: int, arm: int, reward: float) -> None:
    """Reject a reward outside [0, 1] (NaN included) or an arm outside the pool, naming the selector."""
    check_reward(owner, reward)
    if not 0 <= arm < num_arms:
        raise ValueError(f"arm {arm} out of range 0..{num_arms - 1}")


@dataclass
class StepFeedback:
    """What a LASeR step produced, for selectors that learn from more than the scalar reward
    (e.g. an online ensemble crediting each RM by its agreement with the pairs trained on).

    `scores` maps each scoring arm to its raw scores, shape [num_prompts, n]; `pairs` are the
    (prompt, chosen, rejected) response indices the step trained on.
    """

    scores: dict[int, torch.Tensor]
    pairs: list[tuple[int, int, int]]


@dataclass(frozen=True)
class Selection:
    """Which RMs score this batch. `arms` are indices into the RM pool; `propensity` is the probability
    with which the selector chose this selection, when it has one (None for deterministic rules).
    `trains=False` asks the step to measure the selection's reward with an update it then undoes: the
    selector is only trying the RM out and the policy should not learn its preferences (LinUCB's
    `train_while_exploring=false`)."""

    arms: tuple[int, ...]
    propensity: float | None = None
    info: dict[str, Any] | None = None  # per-arm diagnostics worth logging (estimates, bonuses)
    trains: bool = True

    @property
    def arm(self) -> int:
        """The single chosen arm (selectors that pick one RM)."""
        if len(self.arms) != 1:
            raise ValueError(f"selection has {len(self.arms)} arms, not one: {self.arms}")
        return self.arms[0]


class Selector(ABC):
    """Chooses RMs from a pool of `num_arms` and learns from rewards in [0, 1].

    `granularity` is "batch" (one selection per batch, the paper) or "instance" (one per prompt:
    the module then calls `select`/`update` once per prompt with that prompt's context and reward).
    `uses_context = False` marks a selector whose `select` and `update` ignore the context: the module
    then skips computing it (a no-grad policy forward over the prompts every step) and passes zeros.
    """

    uses_context: bool = True

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, granularity: str = "batch") -> None:
        if num_arms < 1:
            raise ValueError(f"num_arms must be >= 1, got {num_arms}")
        check_values("bandit", granularity=granularity)
        self.num_arms = num_arms
        self.arm_names = list(arm_names) if arm_names is not None else [f"rm{k}" for k in range(num_arms)]
        self.granularity = granularity

    @abstractmethod
    def select(self, context: torch.Tensor) -> Selection:
        """Choose RMs for a batch whose context is a 1-D vector."""

    def update(  # noqa: B027
        self, selection: Selection, context: torch.Tensor, reward: float, feedback: StepFeedback | None = None
    ) -> None:
        """Learn from the reward (in [0, 1]) that `selection` earned in `context`. Default: no learning."""

    def combine(self, scores: dict[int, torch.Tensor]) -> torch.Tensor:
        """One score per response from the chosen arms' scores (arm index -> tensor). Default: the
        single chosen arm's scores unchanged."""
        if len(scores) != 1:
            raise ValueError(f"{type(self).__name__} combines exactly one arm's scores, got {sorted(scores)}")
        return next(iter(scores.values()))

    def filter_pairs(
        self, pairs: list[tuple[int, int, int]], scores: dict[int, torch.Tensor]
    ) -> list[tuple[int, int, int]]:
        """Drop pairs the selector does not trust (e.g. where RMs disagree). Default: keep all."""
        return pairs

    def on_iteration_end(self, iteration: int) -> None:  # noqa: B027
        """Called after each training iteration (schedules, per-iteration resets). Default: nothing."""

    def diagnostics(self) -> dict[str, float]:
        """Per-arm figures worth logging (counts, estimated means, bonuses), keyed `<what>/<arm name>`."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this selector left off (checkpointed)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore from `state_dict()`."""
