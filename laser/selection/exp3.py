"""EXP3 (Auer et al. 2002): an adversarial, non-contextual bandit baseline for picking one RM per batch.

The reward of an RM drifts as the policy trains (the normalised loss is not stationary), which is the
setting EXP3 was made for. With K arms and exploration rate gamma:

    p_k   = (1 - gamma) * w_k / sum_j w_j + gamma / K
    xhat  = r / p_k                      (importance-weighted reward, chosen arm only)
    w_k  *= exp(gamma * xhat / K)

Weights are kept as logarithms: xhat can reach K / gamma, so raw weights overflow within a few hundred
steps, while log-weights only need the log-sum-exp shift when normalising.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from laser.selection.base import Selection, Selector, StepFeedback, check_feedback, check_rate


def exp3_probabilities(log_weights: np.ndarray, gamma: float) -> np.ndarray:
    """p_k = (1 - gamma) * softmax(log_weights)_k + gamma / K."""
    shifted = np.exp(log_weights - log_weights.max())
    return (1.0 - gamma) * shifted / shifted.sum() + gamma / len(log_weights)


class EXP3(Selector):
    """EXP3 over `num_arms` RMs with exploration rate `gamma` in (0, 1]; the context is ignored.

    `update` uses the propensity stored in the `Selection` (the p_k the arm was drawn with), so the
    importance weight stays right even if several selections are made before their updates (per-prompt
    granularity); a Selection without one falls back to the current probabilities.
    """

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, gamma: float = 0.1,
                 seed: int = 0, granularity: str = "batch") -> None:
        super().__init__(num_arms, arm_names, granularity)
        check_rate("gamma", gamma)
        self.gamma = float(gamma)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.log_weights = np.zeros(num_arms)  # w_k = 1 for every arm
        self.counts = [0] * num_arms

    def probabilities(self) -> np.ndarray:
        """The current sampling distribution over arms."""
        return exp3_probabilities(self.log_weights, self.gamma)

    def select(self, context: torch.Tensor) -> Selection:
        """Draw an arm from the EXP3 distribution; the propensity is its probability."""
        probs = self.probabilities()
        arm = int(self.rng.choice(self.num_arms, p=probs))
        return Selection(arms=(arm,), propensity=float(probs[arm]), info={"probabilities": probs.tolist()})

    def update(self, selection: Selection, context: torch.Tensor, reward: float,
               feedback: StepFeedback | None = None) -> None:
        """Raise the chosen arm's log-weight by gamma * (reward / p_k) / K."""
        k = selection.arm
        check_feedback("EXP3", self.num_arms, k, reward)
        p = selection.propensity if selection.propensity is not None else float(self.probabilities()[k])
        self.log_weights[k] += self.gamma * (float(reward) / p) / self.num_arms
        self.counts[k] += 1

    def diagnostics(self) -> dict[str, float]:
        """Each arm's current selection probability."""
        return {f"prob/{name}": float(p) for name, p in zip(self.arm_names, self.probabilities(), strict=True)}

    def state_dict(self) -> dict[str, Any]:
        """Log-weights, pull counts and the RNG state."""
        return {"log_weights": self.log_weights.tolist(), "counts": list(self.counts),
                "rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`, so later draws are identical."""
        if len(state["log_weights"]) != self.num_arms:
            raise ValueError(f"state has {len(state['log_weights'])} arms, this EXP3 has {self.num_arms}")
        self.log_weights = np.array([float(w) for w in state["log_weights"]], dtype=np.float64)
        self.counts = [int(c) for c in state["counts"]]
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
