"""Contextual epsilon-greedy: the simplest exploring baseline for a linear bandit.

Each arm keeps the same ridge regression as LinUCB (`RidgeArms`). Per batch, with probability eps_t an
arm is drawn uniformly; otherwise the arm with the highest estimate theta_k . x is chosen (ties at
random). eps_t = max(eps_min, eps0 * decay**t), t = selections made so far, so exploration fades as the
estimates firm up. Unlike LinUCB it explores blindly: an arm known to be bad is still tried eps_t/K of
the time, which is the price of not needing a confidence bound.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from laser.errors import LaserConfigError
from laser.selection.base import Selection, check_rate
from laser.selection.ridge import TIE_TOLERANCE, RidgeSelector


def epsilon_schedule(t: int, eps0: float, decay: float, eps_min: float) -> float:
    """Exploration probability at selection t (0-based): max(eps_min, eps0 * decay**t)."""
    return max(eps_min, eps0 * decay**t)


class EpsilonGreedy(RidgeSelector):
    """Greedy on ridge estimates, uniform exploration with a decaying probability (numpy `seed`).

    eps0=0 with eps_min=0 is pure greedy. `reset_each_iteration` forgets the regressions after each
    training iteration and restarts the schedule at eps0 (fresh estimates need fresh exploration); the
    RNG runs on.
    """

    def __init__(self, num_arms: int, arm_names: list[str] | None = None, eps0: float = 0.2,
                 decay: float = 0.99, eps_min: float = 0.01, ridge_lambda: float = 1.0, seed: int = 0,
                 reset_each_iteration: bool = False, granularity: str = "batch") -> None:
        super().__init__(num_arms, arm_names, ridge_lambda, granularity, reset_each_iteration)
        if not (0.0 <= eps0 <= 1.0 and 0.0 <= eps_min <= 1.0):
            raise LaserConfigError(f"eps0 and eps_min must be in [0, 1], got eps0={eps0}, eps_min={eps_min}")
        check_rate("decay", decay)
        self.eps0, self.decay, self.eps_min = float(eps0), float(decay), float(eps_min)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.t = 0  # selections so far: the schedule's clock

    @property
    def epsilon(self) -> float:
        """The exploration probability the next selection uses."""
        return epsilon_schedule(self.t, self.eps0, self.decay, self.eps_min)

    def _greedy_set(self, x: torch.Tensor) -> list[int]:
        estimates = self.ridge.estimates(x)
        return torch.nonzero(estimates >= estimates.max() - TIE_TOLERANCE).flatten().tolist()

    def probabilities(self, context: torch.Tensor) -> torch.Tensor:
        """P(choose arm k) for every arm at `context` under the current eps: (1-eps)[k greedy]/#greedy +
        eps/K. Sums to 1; changes no state beyond allocating the statistics on first use."""
        x = self.ridge.prepare(context)
        eps, greedy = self.epsilon, self._greedy_set(x)
        probs = torch.full((self.num_arms,), eps / self.num_arms, dtype=torch.float64)
        probs[greedy] += (1.0 - eps) / len(greedy)
        return probs

    def select(self, context: torch.Tensor) -> Selection:
        """Explore uniformly with probability eps_t, else take the best estimate; advances t."""
        x = self.prepare(context)
        eps, greedy = self.epsilon, self._greedy_set(x)
        # Always one uniform draw, then one arm draw (uniform, or among tied greedy arms only on a tie).
        explore = self.rng.random() < eps
        if explore:
            arm = int(self.rng.integers(self.num_arms))
        else:
            arm = greedy[0] if len(greedy) == 1 else int(greedy[self.rng.integers(len(greedy))])
        propensity = (1.0 - eps) * (arm in greedy) / len(greedy) + eps / self.num_arms
        self.t += 1
        info = {
            "estimates": self.ridge.estimates(x).tolist(),
            "epsilon": eps,
            "explored": explore,
            "counts": list(self.ridge.counts),
        }
        return Selection(arms=(arm,), propensity=propensity, info=info)

    def on_iteration_end(self, iteration: int) -> None:
        """With `reset_each_iteration`, forget the regressions and restart the schedule (not the RNG)."""
        super().on_iteration_end(iteration)
        if self.reset_each_iteration:
            self.t = 0

    def diagnostics(self) -> dict[str, float]:
        """`epsilon` (next selection's), `count/<arm>`, and `estimate/<arm>` at the last context seen."""
        out = {"epsilon": self.epsilon, **super().diagnostics()}
        if self._last_x is not None:
            for name, e in zip(self.arm_names, self.ridge.estimates(self._last_x).tolist(), strict=True):
                out[f"estimate/{name}"] = e
        return out

    def state_dict(self) -> dict[str, Any]:
        """Arm statistics, pull counts, the schedule's clock and the RNG state."""
        return {**super().state_dict(), "t": self.t, "rng": copy.deepcopy(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore exactly, so the next choices are the ones the saved selector would make."""
        super().load_state_dict(state)
        self.t = int(state["t"])
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
