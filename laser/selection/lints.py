"""Linear Thompson sampling (Agrawal & Goyal 2013) with disjoint arms: a randomised rival to LinUCB.

Each arm keeps the same ridge regression as LinUCB (`RidgeArms`). Per batch, every arm draws
theta_k ~ N(theta_hat_k, v^2 A_k^{-1}) and the arm whose draw scores the context highest (theta_k . x) is
chosen. Exploration comes from the spread of the posterior rather than from a bonus, so an arm is tried in
proportion to the chance that it is best, and the choice has a propensity (useful for off-policy logs).

Cost per batch: a Cholesky factor of every A_k^{-1}, O(K d^3); keep d small with `context.dim` (a random
projection) when contexts are LLM hidden states.
"""

from __future__ import annotations

from typing import Any

import torch

from laser.selection.base import Selection, check_at_least
from laser.selection.ridge import TIE_TOLERANCE, RidgeSelector, cholesky_with_jitter


def tie_credit(scores: torch.Tensor, arm: int) -> torch.Tensor:
    """For each row of `scores` (... x K), 1/|argmax set| if `arm` is in the row's argmax set, else 0: the
    chance that `arm` wins that draw when ties are broken uniformly."""
    winners = scores >= scores.max(dim=-1, keepdim=True).values - TIE_TOLERANCE
    return winners[..., arm].double() / winners.sum(dim=-1).double()


class LinTS(RidgeSelector):
    """Disjoint linear Thompson sampling over `num_arms` RMs.

    `v` scales the posterior (v^2 A^{-1}, Agrawal & Goyal's variance knob): 0 is greedy on theta_hat,
    larger explores more. `ridge_lambda` is each arm's prior precision. `seed` seeds a torch.Generator
    that makes every draw. `reset_each_iteration` forgets the regressions after each training
    iteration (not the generator).

    The propensity is a Monte Carlo ESTIMATE of P(chosen arm has the highest draw): the fraction of
    `propensity_samples` further draws (from the same generator) plus the draw that made the choice in
    which the chosen arm wins, so it is never 0. Those draws sample theta_k . x ~ N(theta_hat_k . x,
    v^2 x^T A_k^{-1} x) directly, which has the same law as drawing theta_k and costs O(K) per draw.
    """

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, v: float = 0.5,
                 ridge_lambda: float = 1.0, seed: int = 0, propensity_samples: int = 64,
                 reset_each_iteration: bool = False, granularity: str = "batch") -> None:
        super().__init__(num_arms, arm_names, ridge_lambda, granularity, reset_each_iteration)
        check_at_least("v", v)
        check_at_least("propensity_samples", propensity_samples)
        self.v = float(v)
        self.propensity_samples = int(propensity_samples)
        self.generator = torch.Generator().manual_seed(seed)
        self.last_thetas: torch.Tensor | None = None  # the K x d draws behind the latest choice

    def sample_thetas(self) -> torch.Tensor:
        """One posterior draw per arm, K x d: theta_hat_k + v L_k z_k with L_k L_k^T = A_k^{-1} and
        z_k ~ N(0, I) drawn as one K x d block from the generator."""
        L = cholesky_with_jitter(self.ridge.A_inv)
        z = torch.randn(self.num_arms, self.ridge.dim, generator=self.generator, dtype=torch.float64)
        return self.ridge.theta() + self.v * torch.einsum("kij,kj->ki", L, z)

    def select(self, context: torch.Tensor) -> Selection:
        """Draw every arm's theta and pick the best for `context` (a tie, possible when v=0, at random)."""
        x = self.prepare(context)
        self.last_thetas = self.sample_thetas()
        sampled = self.last_thetas @ x
        estimates, stds = self.ridge.estimates(x), self.v * self.ridge.variances(x).sqrt()
        # Draw order (fixed, so checkpoints resume exactly): thetas, propensity draws, then a tie-break.
        draws = torch.randn(
            self.propensity_samples, self.num_arms, generator=self.generator, dtype=torch.float64
        )
        tied = torch.nonzero(sampled >= sampled.max() - TIE_TOLERANCE).flatten().tolist()
        pick = 0 if len(tied) == 1 else int(torch.randint(len(tied), (1,), generator=self.generator))
        arm = tied[pick]
        wins = tie_credit(estimates + stds * draws, arm).sum() + 1.0 / len(tied)
        info = {
            "estimates": estimates.tolist(),
            "stds": stds.tolist(),
            "samples": sampled.tolist(),
            "counts": list(self.ridge.counts),
        }
        return Selection(arms=(arm,), propensity=float(wins) / (self.propensity_samples + 1), info=info)

    def diagnostics(self) -> dict[str, float]:
        """`count/<arm>`; `estimate/<arm>` and `std/<arm>` (posterior sd of theta . x) at the last context."""
        out = super().diagnostics()
        if self._last_x is not None:
            estimates = self.ridge.estimates(self._last_x).tolist()
            stds = (self.v * self.ridge.variances(self._last_x).sqrt()).tolist()
            for name, e, s in zip(self.arm_names, estimates, stds, strict=True):
                out[f"estimate/{name}"], out[f"std/{name}"] = e, s
        return out

    def state_dict(self) -> dict[str, Any]:
        """Arm statistics, pull counts and the generator state (a uint8 tensor)."""
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore exactly, so the next draws and choices are the ones the saved selector would make."""
        super().load_state_dict(state)
        self.generator.set_state(state["generator"])
