"""The update of one LASeR step, as a function of the pairs: hold back what the selector reward asks for,
train on the rest, and measure what the reward reads (`StepEvidence`).

The step itself (`LaserModule._update`), its exploration steps that do not train
(`Selection.trains=False`, LinUCB `train_while_exploring=false`) and the counterfactual diagnostics
(`laser/step/counterfactuals.py`) run this same function, the last two through `update_then_undo`, so a
measurement without an update is exactly what the update would have measured.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from laser.policy.policy import Policy
from laser.selection.selector_reward.base import StepEvidence, holdout_split
from laser.step.losses import DPOLoss
from laser.step.microbatch import Backward, MicroBatching
from laser.step.preference import Pair, policy_margins, preference_loss, step_evidence

# optimiser_step(accumulate): zero the gradients, `accumulate(backward)` (one backward per micro-batch), clip, step
OptimiserStep = Callable[[Callable[[Backward], None]], None]
Update = tuple[StepEvidence, torch.Tensor, dict]  # the evidence, the mean loss, the loss's metrics


def update_on_pairs(policy: Policy, prompt_ids: list[list[int]], response_ids: list[list[int]], pairs: list[Pair],
                    n: int, loss: DPOLoss, micro_batching: MicroBatching, holdout_every: int,
                    optimiser_step: OptimiserStep) -> Update:
    """Train on the pairs (but every `holdout_every`-th prompt's, when > 0) with one `optimiser_step` on the
    mean `loss`, accumulated over `micro_batching`'s micro-batches; return the evidence
    (trained pairs' losses and log-probs before the step, held-back pairs' policy margins before and after
    it), the mean loss, and the loss's metrics."""
    trained, held = holdout_split(pairs, holdout_every)
    if not trained:  # every pair belongs to a held-back prompt: train on them all, measure nothing held
        trained, held = pairs, []
    before = policy_margins(policy, prompt_ids, response_ids, held, n, micro_batching)
    result = preference_loss(policy, prompt_ids, response_ids, trained, n, loss, micro_batching)
    optimiser_step(result.backward)
    after = policy_margins(policy, prompt_ids, response_ids, held, n, micro_batching)
    return step_evidence(trained, result, held, before, after), result.losses.mean(), result.metrics


def update_then_undo(policy: Policy, optimiser: torch.optim.Optimizer, max_grad_norm: float,
                     update: Callable[[OptimiserStep], Update]) -> Update:
    """`update` (`update_on_pairs` given everything but its optimiser step) with a plain step of `optimiser`
    (zero, backward, clip to `max_grad_norm` unless 0, step), then undone: the adapter and the optimiser
    state come back exactly."""
    # copies taken before the update (`state_dict` returns the live tensors, which the step changes in place)
    adapter, state = policy.adapter_state_dict(), copy.deepcopy(optimiser.state_dict())
    trainable = [p for p in policy.parameters() if p.requires_grad]

    def step(accumulate: Callable[[Backward], None]) -> None:
        optimiser.zero_grad()
        accumulate(torch.Tensor.backward)
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
        optimiser.step()

    try:
        return update(step)
    finally:
        policy.load_adapter_state_dict(adapter)
        optimiser.load_state_dict(state)
        optimiser.zero_grad()
