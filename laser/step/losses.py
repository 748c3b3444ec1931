"""Preference losses as pure functions of log-probabilities (plain tensors in, tensors out), and the loss
of the LASeR step as one object built from config (`conf/loss/`, as torchtune's `DPOLoss`).

DPO (Rafailov et al., 2023) on summed response log-probs, plus the NLL term on the chosen response
that iterative reasoning preference optimisation adds (Pang et al., 2024; LASeR uses DPO+NLL for
reasoning, DPO alone for instruction following).

A loss object takes the policy's and the reference's summed log-probs of each pair's chosen and rejected
response and their token counts, and returns per-pair losses and implicit rewards (`PairLosses`). The
step never reads its knobs: another loss (IPO, SimPO, ...) is one class here and one yaml in conf/loss/.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from laser.config.checks import check_values


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


@dataclass
class PairLosses:
    """What a preference loss gives per pair, shape [P] each: the trained objective (`losses`), its
    preference term (`dpo_losses`) and NLL term (`nll_losses`, before weighting), and the implicit
    rewards (detached)."""

    losses: torch.Tensor
    dpo_losses: torch.Tensor
    nll_losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


class DPOLoss(torch.nn.Module):
    """Sigmoid DPO (+ `nll_weight` x the chosen response's per-token NLL), per pair (`conf/loss/dpo.yaml`).

    Args:
        beta: DPO temperature (scale of the implicit reward beta * log pi/pi_ref); must be > 0.
        label_smoothing: conservative DPO, in [0, 0.5): robust to preference labels an RM flipped.
        nll_weight: weight of the NLL term (paper: 1 for reasoning, 0 for instruction following).
    """

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0, nll_weight: float = 0.0) -> None:
        super().__init__()
        check_values("loss", beta=beta, label_smoothing=label_smoothing, nll_weight=nll_weight)
        self.beta, self.label_smoothing, self.nll_weight = float(beta), float(label_smoothing), float(nll_weight)

    def forward(self, policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                reference_chosen_logps: torch.Tensor, reference_rejected_logps: torch.Tensor,
                chosen_lengths: torch.Tensor, rejected_lengths: torch.Tensor) -> PairLosses:
        """Per-pair losses of summed log-probs [P] (token counts [P]; DPO reads only the chosen ones)."""
        dpo = dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                       beta=self.beta, label_smoothing=self.label_smoothing)
        nll = nll_loss(policy_chosen_logps, chosen_lengths)
        return PairLosses(losses=dpo.losses + self.nll_weight * nll, dpo_losses=dpo.losses, nll_losses=nll,
                          chosen_rewards=dpo.chosen_rewards, rejected_rewards=dpo.rejected_rewards)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, label_smoothing={self.label_smoothing}, nll_weight={self.nll_weight}"
