"""The loss of a batch of preference pairs through the policy: DPO (+ nll_weight * NLL on the chosen
response), per pair, with TRL's metric names (`rewards/chosen`, `rewards/margins`, `logps/chosen`, ...),
and what the selector's reward reads of it (`StepEvidence`).

The reference is the policy with its adapter disabled (`Policy.response_logps(reference=True)`), never
a second copy. Chosen and rejected responses go through one concatenated forward each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from laser.policy.policy import Policy
from laser.selection.rewards.base import StepEvidence
from laser.step.losses import dpo_loss, nll_loss

Pair = tuple[int, int, int]  # (prompt, chosen, rejected) indices into n responses per prompt


@dataclass
class PreferenceLoss:
    """Per-pair losses [P] (with grad, for the update) and what the step measured of them (detached)."""

    losses: torch.Tensor
    dpo_losses: torch.Tensor
    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_lengths: torch.Tensor
    rejected_lengths: torch.Tensor
    metrics: dict[str, float]


def pair_tokens(prompt_ids: list[list[int]], response_ids: list[list[int]], pairs: list[Pair],
                n: int) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """The prompt, chosen and rejected token ids of each pair (`response_ids[p * n + j]` answers prompt p)."""
    return ([prompt_ids[p] for p, _, _ in pairs], [response_ids[p * n + c] for p, c, _ in pairs],
            [response_ids[p * n + r] for p, _, r in pairs])


def preference_loss(policy: Policy, prompt_ids: list[list[int]], response_ids: list[list[int]],
                    pairs: list[Pair], n: int, beta: float, label_smoothing: float,
                    nll_weight: float) -> PreferenceLoss:
    """Per-pair losses of (prompt, chosen, rejected) index triples into `n` responses per prompt, and the
    step's metrics."""
    pair_prompts, chosen, rejected = pair_tokens(prompt_ids, response_ids, pairs, n)
    # the reference first: its no-grad forward then peaks alone, not on top of the policy's saved activations
    reference_logps = policy.response_logps(pair_prompts * 2, chosen + rejected, reference=True)
    policy_logps = policy.response_logps(pair_prompts * 2, chosen + rejected)
    count = len(pairs)
    dpo = dpo_loss(policy_logps[:count], policy_logps[count:], reference_logps[:count],
                   reference_logps[count:], beta=beta, label_smoothing=label_smoothing)
    lengths = torch.tensor([len(c) for c in chosen], device=policy_logps.device)
    nll = nll_loss(policy_logps[:count], lengths)
    margins = dpo.chosen_rewards - dpo.rejected_rewards
    detached = policy_logps.detach().float().cpu()
    return PreferenceLoss(
        losses=dpo.losses + nll_weight * nll, dpo_losses=dpo.losses.detach().float().cpu(),
        chosen_logps=detached[:count], rejected_logps=detached[count:], chosen_lengths=lengths.cpu().float(),
        rejected_lengths=torch.tensor([float(len(r)) for r in rejected]),
        metrics={  # TRL's metric names
            "train/dpo_loss": float(dpo.losses.mean().detach()), "train/nll_loss": float(nll.mean().detach()),
            "rewards/chosen": float(dpo.chosen_rewards.mean()), "rewards/rejected": float(dpo.rejected_rewards.mean()),
            "rewards/margins": float(margins.mean()), "rewards/accuracies": float((margins > 0).float().mean()),
            "logps/chosen": float(policy_logps[:count].detach().mean()),
            "logps/rejected": float(policy_logps[count:].detach().mean()),
        })


@torch.no_grad()
def policy_margins(policy: Policy, prompt_ids: list[list[int]], response_ids: list[list[int]],
                   pairs: list[Pair], n: int) -> torch.Tensor:
    """log pi(chosen) - log pi(rejected) of each pair under the live policy, no grad, [P] on the CPU."""
    if not pairs:
        return torch.zeros(0)
    pair_prompts, chosen, rejected = pair_tokens(prompt_ids, response_ids, pairs, n)
    logps = policy.response_logps(pair_prompts * 2, chosen + rejected).float().cpu()
    return logps[: len(pairs)] - logps[len(pairs):]


def step_evidence(trained: list[Pair], loss: PreferenceLoss, pair_losses: torch.Tensor, held: list[Pair],
                  margins_before: torch.Tensor, margins_after: torch.Tensor) -> StepEvidence:
    """The `StepEvidence` of an update on `trained` pairs (with `held` pairs measured before and after it)."""
    return StepEvidence(
        prompts=[p for p, _, _ in trained], pair_losses=pair_losses.detach().float().cpu(),
        dpo_losses=loss.dpo_losses, chosen_logps=loss.chosen_logps, rejected_logps=loss.rejected_logps,
        chosen_lengths=loss.chosen_lengths, rejected_lengths=loss.rejected_lengths,
        heldout_prompts=[p for p, _, _ in held], heldout_margins_before=margins_before,
        heldout_margins_after=margins_after)
