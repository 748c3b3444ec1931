"""The paper's reward minus a baseline that depends on the context and is shared by all arms (an advantage)."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

from laser.config.checks import check_values
from laser.selection.normalisers.base import Normaliser
from laser.selection.selector_reward.negative_loss import NegativeLoss


def ridge_baseline(contexts: list[torch.Tensor], rewards: list[float], x: torch.Tensor, ridge_lambda: float) -> float:
    """The ridge-regression prediction at `x` of the rewards observed at `contexts` (no intercept: the
    contexts are unit vectors), in its dual form, O(W^2 d + W^3) for W observations: X^T (X X^T + lambda I)^-1 r."""
    if not rewards:
        return 0.0
    design = torch.stack([c.to(torch.float64) for c in contexts])
    kernel = design @ design.T + ridge_lambda * torch.eye(len(rewards), dtype=torch.float64)
    weights = torch.linalg.solve(kernel, torch.tensor(rewards, dtype=torch.float64))
    return float((design @ x.to(torch.float64)) @ weights)


class LossAdvantage(NegativeLoss):
    """Minus the loss, minus what minus the loss usually is in this context, whichever RM was chosen.

    Why: the raw loss mixes three things, of which only the last says anything about the RM: the kind of
    prompt (a category whose answers are long or uncertain always loses more), the point in training (the
    loss falls as the policy learns), and the RM's pairs. A baseline fitted on every arm's rewards over the
    last `window` decisions (a ridge regression on the context) removes the first two before the quantile
    normaliser sees the reward, so the normaliser ranks RMs within a kind of prompt, not kinds of prompt.

    Args:
        window: decisions the baseline remembers (older ones are forgotten: the loss drifts).
        ridge_lambda: the baseline's ridge penalty.
    """

    name = "advantage"

    def __init__(self, normaliser: Normaliser, window: int = 100, ridge_lambda: float = 1.0) -> None:
        super().__init__(normaliser, term="total")
        self.name = "advantage"
        check_values("selector_reward", window=window, ridge_lambda=ridge_lambda)
        self.window, self.ridge_lambda = window, float(ridge_lambda)
        self.contexts: deque[torch.Tensor] = deque(maxlen=window)
        self.rewards: deque[float] = deque(maxlen=window)

    def centre(self, raw: float, context: torch.Tensor, learn: bool) -> float:
        x = context.detach().to("cpu", torch.float64).flatten()
        advantage = raw - ridge_baseline(list(self.contexts), list(self.rewards), x, self.ridge_lambda)
        if learn:
            self.contexts.append(x)
            self.rewards.append(float(raw))
        return advantage

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "contexts": [c.clone() for c in self.contexts], "rewards": list(self.rewards)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.contexts = deque((c.clone() for c in state["contexts"]), maxlen=self.window)
        self.rewards = deque(state["rewards"], maxlen=self.window)
