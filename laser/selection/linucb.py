"""LinUCB with disjoint arms (Li et al. 2010, Algorithm 1): the bandit LASeR uses to pick one RM per batch.

Each arm k keeps a ridge regression of reward on context (`RidgeArms`: A_k = lambda * I + sum x x^T,
b_k = sum r x, theta_k = A_k^{-1} b_k) and scores a context x as theta_k . x + alpha * sqrt(x^T A_k^{-1} x),
the estimate plus an exploration bonus that shrinks as the arm sees contexts like x. The arm with the
highest score is chosen; only it learns from the batch's reward.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from laser.selection.base import Selection, check_at_least
from laser.selection.ridge import RidgeSelector, argmax_with_ties


def ucb_terms(A_inv: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-arm (estimates, variances) for context x, given stacked A_inv (K x d x d) and b (K x d):
    estimate_k = (A_k^{-1} b_k) . x and variance_k = x^T A_k^{-1} x (clamped at 0 against rounding)."""
    u = A_inv @ x  # one pass over the K d x d inverses serves both terms (A_k^{-1} is symmetric)
    return (b * u).sum(-1), (x * u).sum(-1).clamp_min(0.0)


def ucb_scores(
    A_inv: torch.Tensor, b: torch.Tensor, x: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-arm (estimates, bonuses) for context x: bonus_k = alpha * sqrt(x^T A_k^{-1} x); the UCB score is
    their sum."""
    estimates, variances = ucb_terms(A_inv, b, x)
    return estimates, alpha * variances.sqrt()


def explore_threshold(pulls: int, ridge_lambda: float) -> float:
    """The variance x^T A^-1 x above which an arm counts as unexplored at x: an arm pulled m times at x
    (unit) has 1/(lambda + m); half a pull of slack lets near-identical contexts count as the same region."""
    return 1.0 / (ridge_lambda + pulls - 0.5)


class LinUCB(RidgeSelector):
    """Disjoint LinUCB over `num_arms` RMs; the context dimension is learned on the first call.

    `alpha` scales exploration (0 is greedy); `ridge_lambda` is the prior precision of each arm's
    regression (larger means slower to trust early rewards). Ties are broken uniformly at random with a
    seeded generator, so runs are reproducible and the first rounds (all scores equal) still spread
    over the arms. `reset_each_iteration` forgets the regressions after every training iteration (the
    policy, and so what each RM is good for, has moved); the tie-breaking RNG runs on.

    `explore_pulls = m > 0` tries every arm in every region of context before trusting the estimates: while
    some arm's variance at x (x^T A_k^-1 x, which is 1/(lambda + m) after m pulls at x itself) is above
    `explore_threshold(m)`, the most uncertain arm is pulled. It needs no notion of "region": an arm is
    unexplored at x exactly when it has seen few contexts like x. With alpha's bonus alone the first few
    rewards of an arm decide whether it is ever tried again in a region, which locks in early mistakes.
    With `train_while_exploring=False` those forced pulls do not train the policy (`Selection.trains`): the
    step measures the reward with an update it undoes, so trying out a bad RM costs its RM calls and the
    step's training, not a policy pushed towards the bad RM's preferences.
    """

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, alpha: float = 0.1,
                 ridge_lambda: float = 1.0, seed: int = 0, reset_each_iteration: bool = False,
                 granularity: str = "batch", explore_pulls: int = 0, train_while_exploring: bool = True) -> None:
        super().__init__(num_arms, arm_names, ridge_lambda, granularity, reset_each_iteration)
        check_at_least("alpha", alpha)
        check_at_least("explore_pulls", explore_pulls)
        self.alpha = float(alpha)
        self.explore_pulls, self.train_while_exploring = int(explore_pulls), bool(train_while_exploring)
        self.ridge_lambda = self.ridge.ridge_lambda
        self.rng = np.random.Generator(np.random.PCG64(seed))

    # The statistics live in `ridge`; these views keep LinUCB's attributes where readers expect them.
    @property
    def dim(self) -> int | None:
        """Context dimension, or None before the first call."""
        return self.ridge.dim

    @property
    def A(self) -> torch.Tensor | None:
        """Per-arm design matrices, K x d x d."""
        return self.ridge.A

    @property
    def A_inv(self) -> torch.Tensor | None:
        """Per-arm inverses of A, K x d x d."""
        return self.ridge.A_inv

    @property
    def b(self) -> torch.Tensor | None:
        """Per-arm reward-weighted context sums, K x d."""
        return self.ridge.b

    @property
    def counts(self) -> list[int]:
        """How often each arm was updated."""
        return self.ridge.counts

    def select(self, context: torch.Tensor) -> Selection:
        """Pick the arm with the highest UCB score for `context`, breaking ties at random."""
        x = self.prepare(context)
        estimates, variances = ucb_terms(self.ridge.A_inv, self.ridge.b, x)  # one pass over the K inverses
        bonuses = self.alpha * variances.sqrt()
        exploring = self.explore_pulls > 0 and float(variances.max()) > explore_threshold(self.explore_pulls,
                                                                                            self.ridge_lambda)
        arm, tied = argmax_with_ties(variances if exploring else estimates + bonuses, self.rng)
        info = {"estimates": estimates.tolist(), "bonuses": bonuses.tolist(), "counts": list(self.counts),
                "exploring": exploring}
        return Selection(arms=(arm,), propensity=1.0 / len(tied), info=info,
                         trains=self.train_while_exploring or not exploring)

    def refresh_inverse(self) -> None:
        """Recompute every A_k^{-1} exactly from A_k (see `RidgeArms.refresh_inverse`)."""
        self.ridge.refresh_inverse()

    def diagnostics(self) -> dict[str, float]:
        """`count/<arm>` always; `estimate/<arm>` and `bonus/<arm>` at the last context seen, if any."""
        out = super().diagnostics()
        if self._last_x is not None:
            estimates, bonuses = ucb_scores(self.ridge.A_inv, self.ridge.b, self._last_x, self.alpha)
            for name, e, u in zip(self.arm_names, estimates.tolist(), bonuses.tolist(), strict=True):
                out[f"estimate/{name}"], out[f"bonus/{name}"] = e, u
        return out

    def state_dict(self) -> dict[str, Any]:
        """Arm statistics (tensors, None before the first call), pull counts and the RNG state."""
        return {**super().state_dict(), "rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore exactly (the stored inverse too, not a recomputed one), so later choices are identical."""
        super().load_state_dict(state)
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
