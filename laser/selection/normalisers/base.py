"""The interface of a reward normaliser: raw reward in, reward in [0, 1] out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Normaliser(ABC):
    """Maps a raw selector reward to [0, 1], the scale every selector's `update` expects.

    `__call__` records the raw value (a normaliser may learn its scale from the rewards it has seen);
    `peek` gives the same mapping without recording (counterfactual diagnostics must not change the run).
    """

    @abstractmethod
    def __call__(self, raw: float) -> float:
        """Record `raw` and return it normalised to [0, 1]."""

    @abstractmethod
    def peek(self, raw: float) -> float:
        """What `__call__(raw)` would return now, without recording `raw`."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds of this normaliser (nothing by default)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore from `state_dict()`."""
