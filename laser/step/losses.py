"""Preference losses as pure functions of log-probabilities (plain tensors in, tensors out).

DPO (Rafailov et al., 2023) on summed response log-probs, plus the NLL term on the chosen response
that iterative reasoning preference optimisation adds (Pang et al., 2024; LASeR uses DPO+NLL for
reasoning, DPO alone for instruction following).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DPOOutput:
    """Per-pair DPO losses and implicit rewards (beta * log-ratio), shape [P] each."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> DPOOutput:
    """Sigmoid DPO loss per pair.

    loss = -(1 - eps) * log sigmoid(beta * m) - eps * log sigmoid(-beta * m), where
    m = (pi_c - ref_c) - (pi_r - ref_r) on summed response log-probs. `label_smoothing` eps > 0 gives
    conservative DPO (robust to flipped preference labels, which noisy RMs produce).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen_logratios = policy_chosen_logps - reference_chosen_logps
    rejected_logratios = policy_rejected_logps - reference_rejected_logps
    logits = beta * (chosen_logratios - rejected_logratios)
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return DPOOutput(
        losses=losses,
        chosen_rewards=beta * chosen_logratios.detach(),
        rejected_rewards=beta * rejected_logratios.detach(),
    )


def nll_loss(chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """Per-pair negative log-likelihood of the chosen response, normalised by its token count
    (as in iterative RPO), so long and short answers weigh alike. Shape [P]."""
    return -chosen_logps / chosen_lengths.clamp(min=1).to(chosen_logps.dtype)
