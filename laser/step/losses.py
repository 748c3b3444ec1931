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


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Summed log-probs of `labels` under `logits`, counting only positions where `loss_mask` is 1.

    logits [N, T, V] predict the token at t+1 from position t; labels and loss_mask are [N, T] aligned
    with the input ids (the shift happens here). Returns [N].

    log p(label) = logit[label] - logsumexp(logits), one row at a time and upcast to at least float32
    row by row: a full log_softmax would hold a second [N, T, V] tensor (and a bfloat16 model's
    logits a float32 copy of them), which at a 128k vocabulary is the step's largest allocation.
    """
    logits = logits[:, :-1, :]
    labels = labels[:, 1:]
    compute_dtype = torch.promote_types(logits.dtype, torch.float32)
    mask = loss_mask[:, 1:].to(compute_dtype)
    picked = torch.gather(logits, 2, labels.unsqueeze(-1)).squeeze(-1).to(compute_dtype)
    normaliser = torch.stack([torch.logsumexp(row.to(compute_dtype), dim=-1) for row in logits])
    return ((picked - normaliser) * mask).sum(-1)
