"""Gaussian Thompson sampling: a non-contextual bandit baseline for picking one RM per batch.

Each arm k has an unknown mean normalised reward mu_k with prior N(prior_mean, prior_std^2); rewards
are modelled as mu_k + N(0, sigma^2) noise with sigma known. The posterior stays Gaussian (conjugate):
after n_k rewards summing to s_k,

    precision_k = 1 / prior_std^2 + n_k / sigma^2
    mean_k      = (prior_mean / prior_std^2 + s_k / sigma^2) / precision_k

Each batch draws one mu_k from every arm's posterior and picks the largest. Against LinUCB this row
shows what the context (the policy's hidden state) adds over learning one global best RM.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch

from laser.errors import LaserConfigError
from laser.selection.base import Selection, Selector, StepFeedback, check_at_least, check_feedback


def gaussian_posterior(count: int, reward_sum: float, prior_mean: float, prior_std: float,
                       sigma: float) -> tuple[float, float]:
    """(mean, std) of the posterior on an arm's mean reward after `count` rewards summing to `reward_sum`."""
    precision = 1.0 / prior_std**2 + count / sigma**2
    mean = (prior_mean / prior_std**2 + reward_sum / sigma**2) / precision
    return mean, 1.0 / math.sqrt(precision)


class GaussianThompson(Selector):
    """Thompson sampling with a Gaussian posterior per arm; ignores the context.

    The propensity of a choice (the probability that this arm's posterior draw is the largest) has no
    closed form for K > 2, so it is estimated by Monte Carlo: `propensity_samples` extra joint draws
    from the posteriors, plus the draw that made the choice, i.e. (wins + 1) / (samples + 1). Counting
    the realised draw keeps the estimate above zero (it is divided by in off-policy estimates) at the
    cost of a small upward bias, at most 1 / (samples + 1). These draws use their own random stream,
    so changing `propensity_samples` does not change which arms are chosen. 0 skips the estimate.
    """

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, sigma: float = 0.25,
                 prior_mean: float = 0.5, prior_std: float = 0.5, propensity_samples: int = 1000,
                 seed: int = 0, granularity: str = "batch") -> None:
        super().__init__(num_arms, arm_names, granularity)
        if sigma <= 0 or prior_std <= 0:
            raise LaserConfigError(f"sigma and prior_std must be > 0, got sigma={sigma}, prior_std={prior_std}")
        check_at_least("propensity_samples", propensity_samples)
        self.sigma, self.prior_mean, self.prior_std = float(sigma), float(prior_mean), float(prior_std)
        self.propensity_samples = int(propensity_samples)
        choice_seed, propensity_seed = np.random.SeedSequence(seed).spawn(2)
        self.rng = np.random.Generator(np.random.PCG64(choice_seed))
        self.propensity_rng = np.random.Generator(np.random.PCG64(propensity_seed))
        self.counts = [0] * num_arms
        self.reward_sums = [0.0] * num_arms

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-arm posterior means and standard deviations, as float64 arrays of length K."""
        stats = [gaussian_posterior(n, s, self.prior_mean, self.prior_std, self.sigma)
                 for n, s in zip(self.counts, self.reward_sums, strict=True)]
        means, stds = zip(*stats, strict=True)
        return np.array(means), np.array(stds)

    def select(self, context: torch.Tensor) -> Selection:
        """Draw a mean for every arm from its posterior and pick the largest; the context is ignored."""
        means, stds = self.posterior()
        draws = self.rng.normal(means, stds)
        arm = int(np.argmax(draws))
        propensity = None
        if self.propensity_samples:
            extra = self.propensity_rng.normal(means, stds, size=(self.propensity_samples, self.num_arms))
            wins = int(np.count_nonzero(extra.argmax(axis=1) == arm))
            propensity = (wins + 1) / (self.propensity_samples + 1)
        info = {"draws": draws.tolist(), "means": means.tolist(), "stds": stds.tolist()}
        return Selection(arms=(arm,), propensity=propensity, info=info)

    def update(self, selection: Selection, context: torch.Tensor, reward: float,
               feedback: StepFeedback | None = None) -> None:
        """Add the reward to the chosen arm's posterior (a conjugate Gaussian update)."""
        k = selection.arm
        check_feedback("GaussianThompson", self.num_arms, k, reward)
        self.counts[k] += 1
        self.reward_sums[k] += float(reward)

    def diagnostics(self) -> dict[str, float]:
        """Posterior mean and std of each arm's mean reward."""
        means, stds = self.posterior()
        out = {f"posterior_mean/{name}": float(m) for name, m in zip(self.arm_names, means, strict=True)}
        out.update({f"posterior_std/{name}": float(s) for name, s in zip(self.arm_names, stds, strict=True)})
        return out

    def state_dict(self) -> dict[str, Any]:
        """Pull counts, reward sums and both RNG states."""
        return {"counts": list(self.counts), "reward_sums": list(self.reward_sums),
                "rng": copy.deepcopy(self.rng.bit_generator.state),
                "propensity_rng": copy.deepcopy(self.propensity_rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`, so later draws are identical."""
        if len(state["counts"]) != self.num_arms:
            raise ValueError(f"state has {len(state['counts'])} arms, this selector has {self.num_arms}")
        self.counts = [int(c) for c in state["counts"]]
        self.reward_sums = [float(s) for s in state["reward_sums"]]
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.propensity_rng.bit_generator.state = copy.deepcopy(state["propensity_rng"])
