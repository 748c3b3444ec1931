"""The loss of a batch of preference pairs through the policy: DPO (+ nll_weight * NLL on the chosen
response), per pair, with TRL's metric names (`rewards/chosen`, `rewards/margins`, `logps/chosen`, ...).

The reference is the policy with its adapter disabled (`Policy.response_logps(reference=True)`), never
a second copy. Chosen and rejected responses go through one concatenated forward each.
"""

from __future__ import annotations

import torch

from laser.policy.policy import Policy
from laser.step.losses import dpo_loss, nll_loss


def preference_loss(policy: Policy, prompt_ids: list[list[int]], response_ids: list[list[int]],
                    pairs: list[tuple[int, int, int]], n: int, beta: float, label_smoothing: float,
                    nll_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-pair losses [P] of (prompt, chosen, rejected) index triples into `n` responses per prompt
    (`response_ids[p * n + j]`), and the step's metrics."""
    pair_prompts = [prompt_ids[p] for p, _, _ in pairs]
    chosen = [response_ids[p * n + c] for p, c, _ in pairs]
    rejected = [response_ids[p * n + r] for p, _, r in pairs]
    # the reference first: its no-grad forward then peaks alone, not on top of the policy's saved activations
    reference_logps = policy.response_logps(pair_prompts * 2, chosen + rejected, reference=True)
    policy_logps = policy.response_logps(pair_prompts * 2, chosen + rejected)
    count = len(pairs)
    dpo = dpo_loss(policy_logps[:count], policy_logps[count:], reference_logps[:count],
                   reference_logps[count:], beta=beta, label_smoothing=label_smoothing)
    lengths = torch.tensor([len(c) for c in chosen], device=policy_logps.device)
    nll = nll_loss(policy_logps[:count], lengths)
    pair_losses = dpo.losses + nll_weight * nll
    margins = dpo.chosen_rewards - dpo.rejected_rewards
    return pair_losses, {  # TRL's metric names
        "train/dpo_loss": float(dpo.losses.mean().detach()), "train/nll_loss": float(nll.mean().detach()),
        "rewards/chosen": float(dpo.chosen_rewards.mean()), "rewards/rejected": float(dpo.rejected_rewards.mean()),
        "rewards/margins": float(margins.mean()), "rewards/accuracies": float((margins > 0).float().mean()),
        "logps/chosen": float(policy_logps[:count].detach().mean()),
        "logps/rejected": float(policy_logps[count:].detach().mean()),
    }
