"""Per-arm ridge regression of reward on context: the state every linear bandit here shares.

Arm k keeps A_k = lambda * I + sum x x^T, b_k = sum r x and theta_k = A_k^{-1} b_k over the contexts it
was chosen for. LinUCB, LinTS, epsilon-greedy and D-LinUCB differ only in how they turn (theta_k, A_k^{-1})
into a choice, so the statistics, their checks and their checkpointing live here once.

A_k^{-1} is kept up to date with the Sherman-Morrison rank-one formula, O(d^2) per update instead of an
O(d^3) inverse, which matters because contexts can be LLM hidden states (d in the thousands). Everything is
float64 on the CPU: the incremental inverse accumulates rounding error, and the bandit is tiny next to the
LLM, so precision costs nothing that matters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from laser.selection.base import Selection, Selector, StepFeedback, check_feedback

TIE_TOLERANCE = 1e-12  # scores this close to the max count as tied (exact float ties are common at the start)


def sherman_morrison_update(A_inv: torch.Tensor, x: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """Return (A + x x^T)^{-1} given the symmetric A^{-1} (d x d) and x (d): A^{-1} - (A^{-1}x)(A^{-1}x)^T /
    (1 + x^T A^{-1} x), as one rank-one update (`addr`: no d x d temporary besides the result; with
    `in_place`, none at all: A_inv itself is updated and returned). Uses the symmetry of A^{-1}
    (u = A^{-1} x serves both sides)."""
    u = A_inv @ x
    alpha = -1.0 / (1.0 + float(x @ u))
    return A_inv.addr_(u, u, alpha=alpha) if in_place else A_inv.addr(u, u, alpha=alpha)


def ridge_estimates(A_inv: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-arm predicted reward theta_k . x with theta_k = A_k^{-1} b_k (A_inv: K x d x d, b: K x d)."""
    # theta_k . x = b_k . (A_k^{-1} x) since A_k^{-1} is symmetric: K matrix-vector products, no d x d temporaries
    return (b * (A_inv @ x)).sum(-1)


def quadratic_forms(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-arm x^T M_k x for stacked M (K x d x d), clamped at 0: rounding can make a tiny quadratic form
    slightly negative, and the square roots taken of it would give NaN."""
    return (x * (M @ x)).sum(-1).clamp_min(0.0)


def cholesky_with_jitter(M: torch.Tensor, tries: int = 6) -> torch.Tensor:
    """Lower Cholesky factors of stacked symmetric positive (semi-)definite matrices (... x d x d). A factor
    that fails (rounding made M_k barely indefinite) is retried with a jitter on the diagonal that starts at
    1e-12 of the mean diagonal and grows tenfold per try."""
    L, info = torch.linalg.cholesky_ex(M)
    if not bool((info != 0).any()):
        return L
    eye = torch.eye(M.shape[-1], dtype=M.dtype)
    scale = M.diagonal(dim1=-2, dim2=-1).mean(-1).abs().clamp_min(1e-300)[..., None, None]
    for power in range(tries):
        L, info = torch.linalg.cholesky_ex(M + (1e-12 * 10**power) * scale * eye)
        if not bool((info != 0).any()):
            return L
    raise torch.linalg.LinAlgError(f"Cholesky failed even with jitter 1e-{13 - tries} x the mean diagonal")


def argmax_with_ties(scores: torch.Tensor, rng: np.random.Generator) -> tuple[int, list[int]]:
    """The arm with the highest score and every arm tied with it; a real tie is broken uniformly at random.
    Draws only on a real tie, so the random stream does not depend on how often scores differ."""
    tied = torch.nonzero(scores >= scores.max() - TIE_TOLERANCE).flatten().tolist()
    arm = tied[0] if len(tied) == 1 else int(tied[rng.integers(len(tied))])
    return arm, tied


class RidgeArms:
    """Disjoint ridge regressions for `num_arms` arms, allocated on the first context (when d is known).

    `owner` names the selector in error messages. Tensors are None until `prepare` first sees a context.
    """

    def __init__(self, num_arms: int, ridge_lambda: float = 1.0, owner: str = "bandit") -> None:
        if ridge_lambda <= 0:
            from laser.errors import LaserConfigError

            raise LaserConfigError(f"ridge_lambda must be > 0 (it keeps A invertible), got {ridge_lambda}")
        self.num_arms = num_arms
        self.ridge_lambda = float(ridge_lambda)
        self.owner = owner
        self.counts = [0] * num_arms
        self.A: torch.Tensor | None = None  # K x d x d
        self.A_inv: torch.Tensor | None = None  # K x d x d
        self.b: torch.Tensor | None = None  # K x d

    @property
    def dim(self) -> int | None:
        """Context dimension, or None before the first context."""
        return None if self.A is None else self.A.shape[-1]

    def _allocate(self, d: int) -> None:
        eye = torch.eye(d, dtype=torch.float64)
        self.A = (self.ridge_lambda * eye).repeat(self.num_arms, 1, 1)
        self.A_inv = (eye / self.ridge_lambda).repeat(self.num_arms, 1, 1)
        self.b = torch.zeros(self.num_arms, d, dtype=torch.float64)

    def prepare(self, context: torch.Tensor) -> torch.Tensor:
        """Cast the context to a float64 CPU vector, check it, and allocate the statistics on first use."""
        x = torch.as_tensor(context).detach().to(device="cpu", dtype=torch.float64)
        if x.ndim != 1:
            raise ValueError(f"{self.owner} context must be a 1-D vector, got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{self.owner} context has non-finite values")
        if self.A is None:
            self._allocate(x.shape[0])
        elif x.shape[0] != self.dim:
            raise ValueError(f"{self.owner} context has dimension {x.shape[0]}, expected {self.dim}")
        return x

    def observe(self, arm: int, x: torch.Tensor, reward: float) -> None:
        """Add (x, reward) to arm `arm`'s regression (x from `prepare`); the other arms are untouched."""
        self.A[arm].addr_(x, x)  # in place: no K x d x d copies per step
        sherman_morrison_update(self.A_inv[arm], x, in_place=True)  # O(d^2), in the stack's own memory
        self.b[arm].add_(x, alpha=float(reward))
        self.counts[arm] += 1

    def theta(self) -> torch.Tensor:
        """Per-arm ridge solutions A_k^{-1} b_k, K x d."""
        return torch.einsum("kij,kj->ki", self.A_inv, self.b)

    def estimates(self, x: torch.Tensor) -> torch.Tensor:
        """Per-arm predicted reward theta_k . x, shape K."""
        return ridge_estimates(self.A_inv, self.b, x)

    def variances(self, x: torch.Tensor) -> torch.Tensor:
        """Per-arm x^T A_k^{-1} x (>= 0), shape K: how unsure each arm's estimate at x is."""
        return quadratic_forms(self.A_inv, x)

    def refresh_inverse(self) -> None:
        """Recompute every A_k^{-1} exactly from A_k, discarding accumulated rounding error. Cheap enough
        to call now and then (e.g. at a checkpoint), too slow for every step when d is large."""
        if self.A is not None:
            self.A_inv = torch.linalg.inv(self.A)

    def reset(self) -> None:
        """Forget every observation: back to the prior (lambda * I, 0, no pulls), keeping d once known."""
        self.counts = [0] * self.num_arms
        if self.A is not None:
            self._allocate(self.A.shape[-1])

    def decay(self, gamma: float) -> None:
        """Discount every arm's past (D-LinUCB): A <- gamma A + (1 - gamma) lambda I, b <- gamma b.

        The added identity is not rank one, so Sherman-Morrison cannot follow it: the inverses are
        recomputed by Cholesky, O(K d^3). A stays >= lambda I, so the factorisation is well conditioned.
        """
        if self.A is None:
            return
        eye = torch.eye(self.A.shape[-1], dtype=torch.float64)
        self.A = gamma * self.A + (1.0 - gamma) * self.ridge_lambda * eye
        self.b = gamma * self.b
        self.A_inv = torch.cholesky_inverse(cholesky_with_jitter(self.A))

    def state_dict(self) -> dict[str, Any]:
        """Statistics (tensors, None before the first context) and pull counts: plain, weights_only-loadable."""

        def clone(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.clone()

        return {
            "A": clone(self.A),
            "A_inv": clone(self.A_inv),
            "b": clone(self.b),
            "counts": list(self.counts),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore exactly (the stored inverse too, not a recomputed one), so later choices are identical."""
        if len(state["counts"]) != self.num_arms:
            raise ValueError(f"state has {len(state['counts'])} arms, this {self.owner} has {self.num_arms}")

        def load(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else torch.as_tensor(t, dtype=torch.float64).clone()

        self.A, self.A_inv, self.b = load(state["A"]), load(state["A_inv"]), load(state["b"])
        self.counts = [int(c) for c in state["counts"]]


class RidgeSelector(Selector):
    """What every selector over `RidgeArms` shares: the statistics (`ridge`), learning from the chosen
    arm's reward, the per-iteration reset, pull counts in the diagnostics, and the checkpointed state.
    Subclasses decide how (theta_k, A_k^{-1}) becomes a choice.

    `reset_each_iteration` forgets the regressions after each training iteration (the policy, and so
    what each RM is good for, has moved). Errors name the selector by its class name.
    """

    def __init__(
        self,
        num_arms: int,
        arm_names: list[str] | None,
        ridge_lambda: float,
        granularity: str,
        reset_each_iteration: bool = False,
    ) -> None:
        super().__init__(num_arms, arm_names, granularity)
        self.ridge = RidgeArms(num_arms, ridge_lambda, owner=type(self).__name__)
        self.reset_each_iteration = bool(reset_each_iteration)
        self._last_x: torch.Tensor | None = None  # the latest context, for diagnostics()

    def prepare(self, context: torch.Tensor) -> torch.Tensor:
        """The context as a checked float64 vector (`RidgeArms.prepare`), kept for `diagnostics`."""
        self._last_x = self.ridge.prepare(context)
        return self._last_x

    def update(
        self, selection: Selection, context: torch.Tensor, reward: float, feedback: StepFeedback | None = None
    ) -> None:
        """Add (context, reward) to the chosen arm's regression; other arms are untouched."""
        check_feedback(type(self).__name__, self.num_arms, selection.arm, reward)
        self.ridge.observe(selection.arm, self.prepare(context), reward)

    def on_iteration_end(self, iteration: int) -> None:
        """With `reset_each_iteration`, forget every arm's regression (random streams run on)."""
        if self.reset_each_iteration:
            self.ridge.reset()

    def diagnostics(self) -> dict[str, float]:
        """`count/<arm>`: how often each arm was updated."""
        return {f"count/{name}": float(c) for name, c in zip(self.arm_names, self.ridge.counts, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        """Arm statistics (tensors, None before the first context) and pull counts."""
        return self.ridge.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the statistics exactly (the stored inverse too, not a recomputed one)."""
        self.ridge.load_state_dict(state)
