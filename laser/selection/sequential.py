"""The sequential-RMs baseline: RM k scores every batch of the k-th block of iterations, cycling.

It mixes RMs on a fixed schedule instead of a learnt one, so against LASeR it separates "using
several RMs over training" from "choosing them adaptively". Cost: one RM per batch, like LASeR.
"""

from __future__ import annotations

import torch

from laser.selection.base import Selection, Selector, check_at_least


def scheduled_arm(completed_iterations: int, iterations_per_arm: int, num_arms: int) -> int:
    """The arm for the iteration after `completed_iterations`: (completed // iterations_per_arm) % K."""
    return (completed_iterations // iterations_per_arm) % num_arms


class SequentialRMs(Selector):
    """Arm (completed_iterations // iterations_per_arm) % K for every batch of the current iteration.

    Training iterations are numbered from 1 (iteration 0 is the evaluation before training and never
    reaches `on_iteration_end`), so with iterations_per_arm=2 and K=3 iterations 1..6 use arms
    0, 0, 1, 1, 2, 2, and iteration 7 starts over at arm 0.
    """

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, iterations_per_arm: int = 1,
                 granularity: str = "batch") -> None:
        super().__init__(num_arms, arm_names, granularity)
        check_at_least("iterations_per_arm", iterations_per_arm, minimum=1)
        self.iterations_per_arm = int(iterations_per_arm)
        self.completed_iterations = 0

    @property
    def current_arm(self) -> int:
        """The arm that scores the batches of the current iteration."""
        return scheduled_arm(self.completed_iterations, self.iterations_per_arm, self.num_arms)

    def select(self, context: torch.Tensor) -> Selection:
        """The scheduled arm; deterministic, so propensity 1."""
        return Selection(arms=(self.current_arm,), propensity=1.0)

    def on_iteration_end(self, iteration: int) -> None:
        """Record that training iteration `iteration` (1-based) has finished."""
        if iteration < 1:
            raise ValueError(f"training iterations are numbered from 1, got {iteration}")
        # Set rather than increment: a repeated call for the same iteration cannot skip an arm.
        self.completed_iterations = int(iteration)

    def diagnostics(self) -> dict[str, float]:
        """1.0 for the scheduled arm, 0.0 for the others."""
        return {f"active/{name}": float(k == self.current_arm) for k, name in enumerate(self.arm_names)}

    def state_dict(self) -> dict[str, int]:
        """The number of completed training iterations."""
        return {"completed_iterations": self.completed_iterations}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the iteration counter from `state_dict()`."""
        self.completed_iterations = int(state["completed_iterations"])
