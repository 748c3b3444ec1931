"""The identity normaliser, for rewards already on a fixed [0, 1] scale (e.g. an agreement rate)."""

from __future__ import annotations

import math

from laser.selection.normalisers.base import Normaliser


class IdentityNormaliser(Normaliser):
    """Returns the raw reward clipped to [0, 1]. Keeps a fraction's meaning (0.5 = chance agreement), which a
    quantile rank would lose, and needs no history; use it only for rewards that live in [0, 1]."""

    def __call__(self, raw: float) -> float:
        return self.peek(raw)

    def peek(self, raw: float) -> float:
        raw = float(raw)
        if not math.isfinite(raw):
            raise ValueError(f"reward to normalise must be finite, got {raw}")
        return min(1.0, max(0.0, raw))
