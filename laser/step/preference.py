"""The loss of a batch of preference pairs through the policy: the step's loss object (`conf/loss/`, e.g.
DPO + nll_weight * NLL) per pair, with TRL's metric names (`rewards/chosen`, `rewards/margins`,
`logps/chosen`, ...), what the selector's reward reads of it (`StepEvidence`), and the micro-batched
backward of its mean.

The reference is the policy with its adapter disabled (`Policy.response_logps(reference=True)`), never
a second copy. Each distinct response is computed once (reference, then policy) and shared by its pairs,
in micro-batches (`MicroBatching`, laser/step/microbatch.py: how the gradient stays the whole batch's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from laser.policy.policy import Policy
from laser.selection.selector_reward.base import StepEvidence
from laser.step.losses import DPOLoss
from laser.step.microbatch import (
    Backward,
    MicroBatching,
    Pair,
    PolicyPass,
    distinct_sequences,
    logps_without_grad,
    policy_pass,
)

ALL_AT_ONCE = MicroBatching()  # one micro-batch of every sequence (laser.micro_batch_size: null)

__all__ = ["MicroBatching", "Pair", "PreferenceLoss", "policy_margins", "preference_loss", "step_evidence"]


@dataclass
class PreferenceLoss:
    """Per-pair losses [P] and what the step measured of them (detached, CPU float32), and the backward
    of their mean (`backward`)."""

    losses: torch.Tensor
    dpo_losses: torch.Tensor
    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_lengths: torch.Tensor
    rejected_lengths: torch.Tensor
    metrics: dict[str, float]
    weights: torch.Tensor  # d mean(losses) / d logp of each distinct sequence [S]
    policy_pass: PolicyPass

    def backward(self, backward: Backward) -> None:
        """Accumulate the gradient of the mean loss into the policy's `.grad`: one `backward(tensor)` per
        micro-batch (`torch.Tensor.backward`, or Lightning's `manual_backward`). Call it once."""
        self.policy_pass.backward(self.weights, backward)


def preference_loss(policy: Policy, prompt_ids: list[list[int]], response_ids: list[list[int]],
                    pairs: list[Pair], n: int, loss: DPOLoss,
                    micro_batching: MicroBatching = ALL_AT_ONCE) -> PreferenceLoss:
    """Per-pair losses of (prompt, chosen, rejected) index triples into `n` responses per prompt, the
    step's metrics, and the backward of the mean loss (in `micro_batching`'s micro-batches)."""
    sequences = distinct_sequences(prompt_ids, response_ids, pairs, n)
    batches = micro_batching.batches(sequences)
    # the reference first: its no-grad forward then peaks alone, not on top of the policy's saved activations
    reference = logps_without_grad(policy, sequences, batches, reference=True)
    live = policy_pass(policy, sequences, batches)
    chosen, rejected = sequences.chosen, sequences.rejected
    lengths = sequences.lengths().to(live.values.device)
    with torch.enable_grad():  # d mean loss / d logp of each sequence, by autograd on a small [S] leaf
        leaf = live.values.clone().requires_grad_()
        out = loss(leaf[chosen], leaf[rejected], reference[chosen], reference[rejected], lengths[chosen],
                   lengths[rejected])
        (weights,) = torch.autograd.grad(out.losses.mean(), leaf)
    margins = out.chosen_rewards - out.rejected_rewards
    values = live.values.float().cpu()
    return PreferenceLoss(
        losses=out.losses.detach().float().cpu(), dpo_losses=out.dpo_losses.detach().float().cpu(),
        chosen_logps=values[chosen], rejected_logps=values[rejected], chosen_lengths=lengths[chosen].cpu(),
        rejected_lengths=lengths[rejected].cpu(), weights=weights, policy_pass=live,
        metrics={  # TRL's metric names
            "train/dpo_loss": float(out.dpo_losses.mean().detach()), "train/nll_loss": float(out.nll_losses.mean().detach()),
            "rewards/chosen": float(out.chosen_rewards.mean()), "rewards/rejected": float(out.rejected_rewards.mean()),
            "rewards/margins": float(margins.mean()), "rewards/accuracies": float((margins > 0).float().mean()),
            "logps/chosen": float(live.values[chosen].mean()), "logps/rejected": float(live.values[rejected].mean()),
        })


def policy_margins(policy: Policy, prompt_ids: list[list[int]], response_ids: list[list[int]],
                   pairs: list[Pair], n: int, micro_batching: MicroBatching = ALL_AT_ONCE) -> torch.Tensor:
    """log pi(chosen) - log pi(rejected) of each pair under the live policy, no grad, [P] on the CPU."""
    if not pairs:
        return torch.zeros(0)
    sequences = distinct_sequences(prompt_ids, response_ids, pairs, n)
    logps = logps_without_grad(policy, sequences, micro_batching.batches(sequences)).float().cpu()
    return logps[sequences.chosen] - logps[sequences.rejected]


def step_evidence(trained: list[Pair], loss: PreferenceLoss, held: list[Pair], margins_before: torch.Tensor,
                  margins_after: torch.Tensor) -> StepEvidence:
    """The `StepEvidence` of an update on `trained` pairs (with `held` pairs measured before and after it)."""
    return StepEvidence(
        prompts=[p for p, _, _ in trained], pair_losses=loss.losses,
        dpo_losses=loss.dpo_losses, chosen_logps=loss.chosen_logps, rejected_logps=loss.rejected_logps,
        chosen_lengths=loss.chosen_lengths, rejected_lengths=loss.rejected_lengths,
        heldout_prompts=[p for p, _, _ in held], heldout_margins_before=margins_before,
        heldout_margins_after=margins_after)
