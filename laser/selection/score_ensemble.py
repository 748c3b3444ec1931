"""The score-ensemble baseline: every RM scores every response and the normalised scores are averaged.

RMs score on different scales (a log-likelihood near -1.3, a classifier logit near 5, a verifier's 0/1),
so averaging raw scores would let the widest-ranging RM decide alone. Each RM's scores are therefore
z-scored over all the batch's responses first (mean 0, std 1), which gives every RM equal influence:
the paper's "normalised scores averaged". An RM whose scores are all equal carries no ranking
information and contributes zeros. Cost: K RM forward passes per response, K times LASeR's.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from laser.selection.base import Selection, Selector

# Relative to the largest |score|: float32 RM scores that differ by less than this are rounding, not signal.
ZERO_STD_TOLERANCE = 1e-6


def zscore(scores: torch.Tensor) -> torch.Tensor:
    """Scores shifted and scaled to mean 0 and (population) std 1 over all elements, in float64; all zeros
    when the scores are (numerically) constant. Non-finite scores give non-finite results, so the caller
    still sees that the RM failed."""
    x = scores.detach().to(dtype=torch.float64)
    centred = x - x.mean()
    std = x.std(correction=0)
    if std <= ZERO_STD_TOLERANCE * x.abs().max():
        return torch.zeros_like(x)
    return centred / std


def weighted_zscore_average(scores: Mapping[int, torch.Tensor],
                            weights: Mapping[int, float] | None = None) -> torch.Tensor:
    """One score per response: the (weighted) mean over RMs of each RM's z-scored scores.

    `scores` maps arm -> scores, all the same shape; `weights` maps arm -> non-negative weight (default
    equal), renormalised over the arms present. The result has that shape and the first arm's dtype.
    """
    if not scores:
        raise ValueError("no RM scores to combine")
    first = next(iter(scores.values()))
    shapes = {arm: tuple(s.shape) for arm, s in scores.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"RM scores have different shapes: {shapes}")
    w = {arm: 1.0 if weights is None else float(weights[arm]) for arm in scores}
    total = sum(w.values())
    if total <= 0:
        raise ValueError(f"ensemble weights must have a positive sum, got {w}")
    combined = sum(w[arm] / total * zscore(s) for arm, s in scores.items())
    return combined.to(dtype=first.dtype)


class ScoreEnsemble(Selector):
    """Selects every RM for every batch (propensity None: nothing is chosen) and averages their
    per-RM z-scored scores (see `zscore`; an RM with zero std contributes zeros). Never learns."""

    def select(self, context: torch.Tensor) -> Selection:
        """All arms, whatever the context."""
        return Selection(arms=tuple(range(self.num_arms)), propensity=None)

    def combine(self, scores: dict[int, torch.Tensor]) -> torch.Tensor:
        """The equal-weight mean of each RM's z-scored scores, same shape as each RM's scores."""
        return weighted_zscore_average(scores)
