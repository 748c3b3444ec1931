"""The update of one LASeR step, as a function of the pairs: hold back what the selector reward asks for,
train on the rest, and measure what the reward reads (`StepEvidence`).

The step itself (`LaserModule._update`) and the counterfactual diagnostics (`laser/step/counterfactuals.py`,
a virtual update per RM, undone) run this same function, so a counterfactual of the chosen RM is exactly
what the step measured.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from laser.policy.policy import Policy
from laser.selection.rewards.base import StepEvidence, holdout_split
from laser.step.preference import Pair, policy_margins, preference_loss, step_evidence


def update_on_pairs(policy: Policy, prompt_ids: list[list[int]], response_ids: list[list[int]], pairs: list[Pair],
                    n: int, beta: float, label_smoothing: float, nll_weight: float, holdout_every: int,
                    optimiser_step: Callable[[torch.Tensor], None]) -> tuple[StepEvidence, torch.Tensor, dict]:
    """Train on the pairs (but every `holdout_every`-th prompt's, when > 0) with `optimiser_step(loss)`;
    return the evidence (trained pairs' losses and log-probs before the step, held-back pairs' policy
    margins before and after it), the detached mean loss, and the loss's metrics."""
    trained, held = holdout_split(pairs, holdout_every)
    if not trained:  # every pair belongs to a held-back prompt: train on them all, measure nothing held
        trained, held = pairs, []
    before = policy_margins(policy, prompt_ids, response_ids, held, n)
    result = preference_loss(policy, prompt_ids, response_ids, trained, n, beta, label_smoothing, nll_weight)
    loss = result.losses.mean()
    optimiser_step(loss)
    after = policy_margins(policy, prompt_ids, response_ids, held, n)
    return step_evidence(trained, result, result.losses, held, before, after), loss.detach(), result.metrics
