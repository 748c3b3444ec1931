"""The single-RM baseline: every batch is scored by the same RM (a row per RM in the results table)."""

from __future__ import annotations

import torch

from laser.errors import LaserConfigError
from laser.selection.base import Selection, Selector


class SingleRM(Selector):
    """Always picks `arm`, given as an index into the pool or as an RM name."""

    uses_context = False  # the fixed arm, whatever the context: no policy forward to compute one

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, arm: int | str = 0,
                 granularity: str = "batch") -> None:
        super().__init__(num_arms, arm_names, granularity)
        self.fixed_arm = self._resolve(arm)

    def _resolve(self, arm: int | str) -> int:
        """Turn a name or index into a valid index, or fail with one line listing the valid choices."""
        # bool is an int subclass; `arm: true` in a yaml is a mistake, not arm 1.
        if isinstance(arm, int) and not isinstance(arm, bool):
            if not 0 <= arm < self.num_arms:
                raise LaserConfigError(
                    f"bandit.arm={arm} is out of range: valid indices are 0..{self.num_arms - 1}"
                )
            return arm
        if isinstance(arm, str):
            if arm not in self.arm_names:
                raise LaserConfigError(
                    f"bandit.arm={arm!r} is not an RM in the pool; valid names: {self.arm_names}"
                )
            return self.arm_names.index(arm)
        raise LaserConfigError(f"bandit.arm must be an index or an RM name, got {arm!r}")

    def select(self, context: torch.Tensor) -> Selection:
        """The fixed arm, whatever the context."""
        return Selection(arms=(self.fixed_arm,), propensity=1.0)
