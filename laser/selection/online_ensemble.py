"""The online-ensemble baseline: all RMs score every response, weighted by how well each has judged.

Scores are combined as a weighted mean of per-RM z-scores (see `score_ensemble.zscore`), weights
starting uniform. After each step, RM k's agreement a_k is the fraction of the trained pairs on which
it scored chosen above rejected, and its gain is

    g_k = r * a_k + (1 - r) * (1 - a_k)

with r the step's normalised reward in [0, 1]: an RM that agreed with a step that paid off, or
disagreed with one that did not, gains. Weights follow Hedge: w_k <- w_k * exp(eta * g_k), normalised.
Cost: K RM forward passes per response, like the score ensemble.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from laser.selection.agreement_ensemble import pair_agreement
from laser.selection.base import Selection, StepFeedback, check_at_least, check_reward
from laser.selection.score_ensemble import ScoreEnsemble, weighted_zscore_average


def hedge_gains(agreement: dict[int, float], reward: float) -> dict[int, float]:
    """g_k = reward * a_k + (1 - reward) * (1 - a_k) for each arm's agreement a_k."""
    return {arm: reward * a + (1.0 - reward) * (1.0 - a) for arm, a in agreement.items()}


class OnlineEnsemble(ScoreEnsemble):
    """All RMs, combined with Hedge weights learnt from each RM's agreement with rewarded steps.

    `eta` is the Hedge learning rate (larger moves weight faster, and locks in early luck faster).
    `update` needs the step's `StepFeedback` (scores and trained pairs); without it, or with no pairs,
    nothing is learnt. Arms missing from the feedback keep their log-weight (a gain of 0).
    """

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, eta: float = 0.5,
                 granularity: str = "batch") -> None:
        super().__init__(num_arms, arm_names, granularity)
        check_at_least("eta", eta)
        self.eta = float(eta)
        # Log-weights: exp(eta * g) compounds over hundreds of steps; only differences matter.
        self.log_weights = [0.0] * num_arms

    @property
    def weights(self) -> list[float]:
        """Normalised weights (sum 1), in arm order."""
        top = max(self.log_weights)
        raw = [math.exp(lw - top) for lw in self.log_weights]
        total = sum(raw)
        return [w / total for w in raw]

    def select(self, context: torch.Tensor) -> Selection:
        """All arms; the info carries the current weights."""
        return Selection(arms=tuple(range(self.num_arms)), propensity=None, info={"weights": self.weights})

    def combine(self, scores: dict[int, torch.Tensor]) -> torch.Tensor:
        """The weighted mean of each RM's z-scored scores (weights renormalised over the arms given)."""
        weights = self.weights
        return weighted_zscore_average(scores, {arm: weights[arm] for arm in scores})

    def update(self, selection: Selection, context: torch.Tensor, reward: float,
               feedback: StepFeedback | None = None) -> None:
        """Hedge step on each RM's gain from its agreement with the trained pairs."""
        check_reward("OnlineEnsemble", reward)
        if feedback is None or not feedback.pairs or not feedback.scores:
            return
        agreement = {arm: float(agrees.float().mean())
                     for arm, agrees in pair_agreement(feedback.scores, feedback.pairs).items()}
        for arm, gain in hedge_gains(agreement, float(reward)).items():
            self.log_weights[arm] += self.eta * gain

    def diagnostics(self) -> dict[str, float]:
        """Each RM's current weight."""
        return {f"weight/{name}": w for name, w in zip(self.arm_names, self.weights, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        """The log-weights."""
        return {"log_weights": list(self.log_weights)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the log-weights from `state_dict()`."""
        if len(state["log_weights"]) != self.num_arms:
            raise ValueError(f"state has {len(state['log_weights'])} arms, this ensemble has {self.num_arms}")
        self.log_weights = [float(w) for w in state["log_weights"]]
