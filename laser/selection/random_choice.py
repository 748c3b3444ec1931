"""The random-RM baseline: each batch is scored by an RM drawn uniformly from the pool.

It shows how much of LASeR's gain comes from *learning* which RM to use rather than from merely
mixing several RMs.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from laser.selection.base import Selection, Selector


class RandomSelector(Selector):
    """Picks one arm uniformly at random (propensity 1/K) with a seeded generator; never learns."""

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, seed: int = 0,
                 granularity: str = "batch") -> None:
        super().__init__(num_arms, arm_names, granularity)
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def select(self, context: torch.Tensor) -> Selection:
        """Draw an arm uniformly; the context is ignored."""
        arm = int(self.rng.integers(self.num_arms))
        return Selection(arms=(arm,), propensity=1.0 / self.num_arms)

    def state_dict(self) -> dict[str, Any]:
        """The RNG state, so a resumed run draws the same arms."""
        return {"rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the RNG state from `state_dict()`."""
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
