"""LinUCB with disjoint arms (Li et al. 2010, Algorithm 1): the bandit LASeR uses to pick one RM per batch.

Each arm k keeps a ridge regression of reward on context: A_k = lambda * I + sum x x^T, b_k = sum r x,
theta_k = A_k^{-1} b_k, and scores a context x as theta_k . x + alpha * sqrt(x^T A_k^{-1} x), the
estimate plus an exploration bonus that shrinks as the arm sees contexts like x. The arm with the
highest score is chosen; only it learns from the batch's reward.

A_k^{-1} is kept up to date with the Sherman-Morrison rank-one formula, O(d^2) per update instead of
an O(d^3) inverse per call, which matters because contexts are LLM hidden states (d in the thousands).
Everything is float64 on the CPU: the incremental inverse accumulates rounding error, and the bandit is
tiny next to the LLM, so precision costs nothing that matters.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from laser.bandits.base import Selection, Selector
from laser.errors import LaserConfigError

TIE_TOLERANCE = 1e-12  # scores this close to the max count as tied (exact float ties are common at the start)


def sherman_morrison_update(A_inv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return (A + x x^T)^{-1} given the symmetric A^{-1} (d x d) and x (d): A^{-1} - (A^{-1}x)(A^{-1}x)^T /
    (1 + x^T A^{-1} x). Uses the symmetry of A^{-1}, so the result stays symmetric."""
    u = A_inv @ x
    return A_inv - torch.outer(u, u) / (1.0 + x @ u)


def ucb_scores(
    A_inv: torch.Tensor, b: torch.Tensor, x: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-arm (estimates, bonuses) for context x, given stacked A_inv (K x d x d) and b (K x d).

    estimate_k = (A_k^{-1} b_k) . x and bonus_k = alpha * sqrt(x^T A_k^{-1} x); the UCB score is their sum.
    """
    theta = torch.einsum("kij,kj->ki", A_inv, b)
    estimates = theta @ x
    # Clamp: rounding can make a tiny quadratic form slightly negative, and sqrt would give NaN.
    variance = torch.einsum("i,kij,j->k", x, A_inv, x).clamp_min(0.0)
    return estimates, alpha * variance.sqrt()


class LinUCB(Selector):
    """Disjoint LinUCB over `num_arms` RMs; the context dimension is learned on the first call.

    `alpha` scales exploration (0 is greedy); `ridge_lambda` is the prior precision of each arm's
    regression (larger means slower to trust early rewards). Ties are broken uniformly at random with a
    seeded generator, so runs are reproducible and the first rounds (all scores equal) still spread
    over the arms.
    """

    def __init__(
        self,
        num_arms: int,
        arm_names: list[str] | None = None,
        alpha: float = 0.1,
        ridge_lambda: float = 1.0,
        seed: int = 0,
        granularity: str = "batch",
    ) -> None:
        super().__init__(num_arms, arm_names, granularity)
        if alpha < 0:
            raise LaserConfigError(f"alpha must be >= 0, got {alpha}")
        if ridge_lambda <= 0:
            raise LaserConfigError(f"ridge_lambda must be > 0 (it keeps A invertible), got {ridge_lambda}")
        self.alpha = float(alpha)
        self.ridge_lambda = float(ridge_lambda)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.counts = [0] * num_arms
        # Allocated on the first context, when d is known.
        self.A: torch.Tensor | None = None  # K x d x d
        self.A_inv: torch.Tensor | None = None  # K x d x d
        self.b: torch.Tensor | None = None  # K x d

    @property
    def dim(self) -> int | None:
        """Context dimension, or None before the first call."""
        return None if self.A is None else self.A.shape[-1]

    def _prepare(self, context: torch.Tensor) -> torch.Tensor:
        """Cast the context to a float64 CPU vector and allocate the arm statistics on first use."""
        x = torch.as_tensor(context).detach().to(device="cpu", dtype=torch.float64)
        if x.ndim != 1:
            raise ValueError(f"LinUCB context must be a 1-D vector, got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("LinUCB context has non-finite values")
        if self.A is None:
            d, k = x.shape[0], self.num_arms
            eye = torch.eye(d, dtype=torch.float64)
            self.A = (self.ridge_lambda * eye).repeat(k, 1, 1)
            self.A_inv = (eye / self.ridge_lambda).repeat(k, 1, 1)
            self.b = torch.zeros(k, d, dtype=torch.float64)
        elif x.shape[0] != self.dim:
            raise ValueError(f"LinUCB context has dimension {x.shape[0]}, expected {self.dim}")
        return x

    def select(self, context: torch.Tensor) -> Selection:
        """Pick the arm with the highest UCB score for `context`, breaking ties at random."""
        x = self._prepare(context)
        estimates, bonuses = ucb_scores(self.A_inv, self.b, x, self.alpha)
        scores = estimates + bonuses
        tied = torch.nonzero(scores >= scores.max() - TIE_TOLERANCE).flatten().tolist()
        # Draw only on a real tie, so the random stream does not depend on how often scores differ.
        arm = tied[0] if len(tied) == 1 else int(tied[self.rng.integers(len(tied))])
        info = {"estimates": estimates.tolist(), "bonuses": bonuses.tolist(), "counts": list(self.counts)}
        return Selection(arms=(arm,), propensity=1.0 / len(tied), info=info)

    def update(self, selection: Selection, context: torch.Tensor, reward: float, feedback=None) -> None:
        """Add (context, reward) to the chosen arm's regression; other arms are untouched."""
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"LinUCB reward must be in [0, 1] (normalise it first), got {reward}")
        k = selection.arm
        if not 0 <= k < self.num_arms:
            raise ValueError(f"arm {k} out of range 0..{self.num_arms - 1}")
        x = self._prepare(context)
        self.A[k] += torch.outer(x, x)
        self.A_inv[k] = sherman_morrison_update(self.A_inv[k], x)
        self.b[k] += float(reward) * x
        self.counts[k] += 1

    def refresh_inverse(self) -> None:
        """Recompute every A_k^{-1} exactly from A_k, discarding accumulated rounding error. Cheap enough
        to call now and then (e.g. at a checkpoint), too slow for every step when d is large."""
        if self.A is not None:
            self.A_inv = torch.linalg.inv(self.A)

    def state_dict(self) -> dict[str, Any]:
        """Arm statistics (tensors, None before the first call), pull counts and the RNG state."""

        def clone(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.clone()

        return {
            "A": clone(self.A),
            "A_inv": clone(self.A_inv),
            "b": clone(self.b),
            "counts": list(self.counts),
            "rng": copy.deepcopy(self.rng.bit_generator.state),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore exactly (the stored inverse too, not a recomputed one), so later choices are identical."""
        if len(state["counts"]) != self.num_arms:
            raise ValueError(f"state has {len(state['counts'])} arms, this LinUCB has {self.num_arms}")

        def load(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else torch.as_tensor(t, dtype=torch.float64).clone()

        self.A, self.A_inv, self.b = load(state["A"]), load(state["A_inv"]), load(state["b"])
        self.counts = [int(c) for c in state["counts"]]
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
