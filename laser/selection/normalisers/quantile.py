"""The paper's normaliser: the raw bandit reward (the negative training loss) mapped to [0, 1] by quantiles.

LinUCB's confidence bonus assumes rewards on a fixed, bounded scale, but a DPO loss drifts (it starts
near log 2 and falls as training goes on) and its scale depends on beta and the model. Normalising
against quantiles of the rewards seen so far makes the bandit reward a rank-like "how good was this
batch compared with recent ones", independent of the loss scale. Quantiles rather than min/max keep
one outlier batch from squashing every later reward towards a constant; the paper uses the 20th and
80th percentiles.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from laser.errors import LaserConfigError
from laser.selection.normalisers.base import Normaliser


class QuantileNormaliser(Normaliser):
    """Callable: `normaliser(raw) -> float in [0, 1]`.

    Each call appends `raw` to the history (only the last `window` values when `window` is set, so the
    scale can follow the loss as it falls), takes the `low_quantile` and `high_quantile` of the history
    including `raw` (numpy's default linear interpolation) and returns `clip((raw - lo) / (hi - lo), 0,
    1)`. While the history has no spread (the first call, or identical rewards) it returns `default`.
    """

    def __init__(
        self,
        low_quantile: float = 0.2,
        high_quantile: float = 0.8,
        window: int | None = None,
        default: float = 0.5,
    ) -> None:
        if not 0.0 <= low_quantile < high_quantile <= 1.0:
            raise LaserConfigError(
                f"quantiles must satisfy 0 <= low < high <= 1, got low_quantile={low_quantile}, "
                f"high_quantile={high_quantile}"
            )
        if window is not None and window < 1:
            raise LaserConfigError(f"window must be >= 1 or None, got {window}")
        if not 0.0 <= default <= 1.0:
            raise LaserConfigError(f"default must be in [0, 1], got {default}")
        self.low_quantile = float(low_quantile)
        self.high_quantile = float(high_quantile)
        self.window = window
        self.default = float(default)
        self.history: deque[float] = deque(maxlen=window)

    def __call__(self, raw: float) -> float:
        """Record `raw` and return it normalised to [0, 1] against the history (including `raw`)."""
        raw = _finite(raw)
        self.history.append(raw)
        return self._normalised(raw, self.history)

    def peek(self, raw: float) -> float:
        """What `__call__(raw)` would return now, without recording `raw`."""
        raw = _finite(raw)
        history = deque(self.history, maxlen=self.window)
        history.append(raw)
        return self._normalised(raw, history)

    def _normalised(self, raw: float, history: deque[float]) -> float:
        lo, hi = np.quantile(np.asarray(history), [self.low_quantile, self.high_quantile])
        spread = float(hi - lo)
        if spread <= 1e-12:  # no spread yet: nothing to compare against, stay neutral
            return self.default
        return float(min(1.0, max(0.0, (raw - float(lo)) / spread)))

    def state_dict(self) -> dict[str, Any]:
        """The reward history (plain floats), enough to continue exactly after a checkpoint."""
        return {"history": [float(v) for v in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the history from `state_dict()` (trimmed to `window` if it is now smaller)."""
        self.history = deque((float(v) for v in state["history"]), maxlen=self.window)


def _finite(raw: float) -> float:
    raw = float(raw)
    if not math.isfinite(raw):
        raise ValueError(f"reward to normalise must be finite, got {raw}")
    return raw
