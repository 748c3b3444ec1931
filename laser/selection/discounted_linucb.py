"""Discounted LinUCB (D-LinUCB, Russac, Vernade & Cappe 2019) with disjoint arms: LinUCB that forgets.

Which RM helps most drifts as the policy trains (an RM that ranks a weak policy's answers well may not
separate a strong policy's), and LinUCB weighs a reward from iteration 1 as much as one from now.
D-LinUCB discounts the past by gamma per step. For every arm k, at every update (time passes for every
arm, chosen or not):

    V_k <- gamma V_k + (1 - gamma) lambda I          Vt_k <- gamma^2 Vt_k + (1 - gamma^2) lambda I
    b_k <- gamma b_k

and the chosen arm also adds x x^T to V_k and Vt_k and r x to b_k. theta_k = V_k^{-1} b_k, and a context is
scored theta_k . x + alpha * sqrt(x^T V_k^{-1} Vt_k V_k^{-1} x), the paper's variance term. Unlike the
paper, the bonus is scaled by a fixed `alpha` (as in LinUCB), not by its beta_t formula, which is loose
in practice and needs a bound on ||theta||. gamma=1 is exactly LinUCB (Vt = V).

Cost: the lambda I term is not rank one, so every update recomputes all K inverses by Cholesky,
O(K d^3) (LinUCB is O(d^2)). With LLM hidden states (d=4096) that is slow; set `context.dim` (a random
projection, e.g. 64) to keep d small.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from laser.selection.base import Selection, StepFeedback, check_at_least, check_feedback, check_rate
from laser.selection.ridge import RidgeSelector, argmax_with_ties


class DiscountedLinUCB(RidgeSelector):
    """D-LinUCB over `num_arms` RMs: `gamma` in (0, 1] is the per-step discount (the memory is about
    1/(1-gamma) steps; 1 never forgets), `alpha` the exploration weight, `ridge_lambda` the prior
    precision that the discount pulls every arm back towards. Ties are broken with a seeded numpy RNG."""

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, alpha: float = 1.0,
                 gamma: float = 0.95, ridge_lambda: float = 1.0, seed: int = 0,
                 granularity: str = "batch") -> None:
        # `ridge` holds V, V^{-1}, b and counts; D-LinUCB never resets (the discount does the forgetting).
        super().__init__(num_arms, arm_names, ridge_lambda, granularity)
        check_at_least("alpha", alpha)
        check_rate("gamma", gamma)
        self.alpha, self.gamma = float(alpha), float(gamma)
        self.V_tilde: torch.Tensor | None = None  # K x d x d, allocated with the ridge statistics
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def prepare(self, context: torch.Tensor) -> torch.Tensor:
        """The checked context (see `RidgeSelector.prepare`); allocates Vt with the ridge statistics."""
        x = super().prepare(context)
        if self.V_tilde is None:
            self.V_tilde = self.ridge.A.clone()  # V_0 = Vt_0 = lambda I
        return x

    def scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-arm (estimates theta_k . x, bonuses alpha * sqrt(x^T V_k^{-1} Vt_k V_k^{-1} x)) for a prepared x."""
        u = torch.einsum("kij,j->ki", self.ridge.A_inv, x)  # V_k^{-1} x (V^{-1} is symmetric)
        # Clamp: rounding can make a tiny quadratic form slightly negative, and sqrt would give NaN.
        variances = torch.einsum("ki,kij,kj->k", u, self.V_tilde, u).clamp_min(0.0)
        return self.ridge.estimates(x), self.alpha * variances.sqrt()

    def select(self, context: torch.Tensor) -> Selection:
        """Pick the arm with the highest discounted UCB score for `context`, breaking ties at random."""
        x = self.prepare(context)
        estimates, bonuses = self.scores(x)
        arm, tied = argmax_with_ties(estimates + bonuses, self.rng)
        info = {
            "estimates": estimates.tolist(),
            "bonuses": bonuses.tolist(),
            "counts": list(self.ridge.counts),
        }
        return Selection(arms=(arm,), propensity=1.0 / len(tied), info=info)

    def update(
        self, selection: Selection, context: torch.Tensor, reward: float, feedback: StepFeedback | None = None
    ) -> None:
        """Discount every arm by gamma, then add (context, reward) to the chosen arm."""
        check_feedback("DiscountedLinUCB", self.num_arms, selection.arm, reward)
        x = self.prepare(context)
        k, lam, g2 = selection.arm, self.ridge.ridge_lambda, self.gamma**2
        self.ridge.decay(self.gamma)  # V, b for all arms; V^{-1} recomputed by Cholesky
        self.ridge.observe(k, x, reward)  # + x x^T, r x on the chosen arm (its V^{-1} by Sherman-Morrison)
        eye = torch.eye(x.shape[0], dtype=torch.float64)
        self.V_tilde = g2 * self.V_tilde + (1.0 - g2) * lam * eye
        self.V_tilde[k] += torch.outer(x, x)

    def diagnostics(self) -> dict[str, float]:
        """`count/<arm>` (undiscounted pulls); `estimate/<arm>`, `bonus/<arm>` at the last context seen."""
        out = super().diagnostics()
        if self._last_x is not None:
            estimates, bonuses = self.scores(self._last_x)
            for name, e, u in zip(self.arm_names, estimates.tolist(), bonuses.tolist(), strict=True):
                out[f"estimate/{name}"], out[f"bonus/{name}"] = e, u
        return out

    def state_dict(self) -> dict[str, Any]:
        """V, V^{-1}, b (as the ridge state), Vt, pull counts and the RNG state."""
        V_tilde = None if self.V_tilde is None else self.V_tilde.clone()
        return {
            **super().state_dict(),
            "V_tilde": V_tilde,
            "rng": copy.deepcopy(self.rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore exactly, so the next choices are the ones the saved selector would make."""
        super().load_state_dict(state)
        V_tilde = state["V_tilde"]
        self.V_tilde = None if V_tilde is None else torch.as_tensor(V_tilde, dtype=torch.float64).clone()
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
