"""The interface of a selector reward: what one LASeR step measured, turned into the number the bandit learns from.

The paper rewards the chosen RM with the negative training loss of the step. That is one choice among
several (`conf/selector_reward/`): every reward reads the same `StepEvidence` (per-pair quantities the step
computed anyway, plus, for rewards that ask for it, the policy's margins on pairs held back from the
update), reduces it to one raw number per decision (`measure`, per process; the module averages it over
ranks), and maps that to [0, 1] with its normaliser (`__call__`, which learns; `peek`, which does not).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any

import torch

from laser.config.checks import check_values
from laser.selection.normalisers.base import Normaliser


@dataclass
class StepEvidence:
    """What a step measured, per preference pair, before the optimiser step (detached, CPU float32).

    `prompts[i]` is the batch index of pair i's prompt. Log-probs are summed over the response's tokens
    under the live policy; `*_lengths` are token counts. The held-back fields are empty unless the reward
    asked for held-back pairs (`SelectorReward.holdout_every`): `heldout_margins_*` are the policy's
    log pi(chosen) - log pi(rejected) on those pairs just before and just after the update (the reference
    model's log-probs would cancel in the difference, so they are not needed)."""

    prompts: list[int]
    pair_losses: torch.Tensor  # DPO + nll_weight * NLL, the trained objective
    dpo_losses: torch.Tensor
    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_lengths: torch.Tensor
    rejected_lengths: torch.Tensor
    heldout_prompts: list[int]
    heldout_margins_before: torch.Tensor
    heldout_margins_after: torch.Tensor

    def for_prompts(self, prompts: set[int] | list[int]) -> StepEvidence:
        """The evidence of the pairs (trained and held back) whose prompt is in `prompts` (one decision's)."""
        keep = set(prompts)
        trained = [i for i, p in enumerate(self.prompts) if p in keep]
        held = [i for i, p in enumerate(self.heldout_prompts) if p in keep]
        values = {}
        for field in fields(self):
            value = getattr(self, field.name)
            rows = held if field.name.startswith("heldout") else trained
            values[field.name] = [value[i] for i in rows] if isinstance(value, list) else value[rows]
        return StepEvidence(**values)

    @property
    def num_pairs(self) -> int:
        return len(self.prompts)


class SelectorReward(ABC):
    """What the selector learns from. Subclasses define `measure`; `holdout_every = k > 0` asks the step to
    hold every k-th prompt's pairs back from the update and measure the policy on them before and after.

    Args:
        normaliser: maps the (centred) raw reward to [0, 1] (`conf/reward_normaliser/`).
    """

    holdout_every: int = 0
    name: str = "reward"

    def __init__(self, normaliser: Normaliser) -> None:
        self.normaliser = normaliser

    @abstractmethod
    def measure(self, evidence: StepEvidence) -> float | None:
        """The raw reward of one decision's evidence (None when there is nothing to measure)."""

    def centre(self, raw: float, context: torch.Tensor, learn: bool) -> float:
        """The raw reward relative to a baseline before normalising (default: none). With `learn`, the
        baseline also learns from (context, raw)."""
        return raw

    def __call__(self, raw: float, context: torch.Tensor) -> float:
        """The reward in [0, 1] for a decision with this raw reward and context; learns from it."""
        return self.normaliser(self.centre(raw, context, learn=True))

    def peek(self, raw: float, context: torch.Tensor) -> float:
        """What `__call__` would return, without learning (counterfactual diagnostics)."""
        return self.normaliser.peek(self.centre(raw, context, learn=False))

    def state_dict(self) -> dict[str, Any]:
        """The normaliser's state (and a subclass's own, e.g. a baseline), for checkpoints."""
        return {"normaliser": self.normaliser.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        self.normaliser.load_state_dict(state["normaliser"])


def holdout_split(pairs: list[tuple[int, int, int]], every: int) -> tuple[list, list]:
    """(trained, held back): with `every = k > 0`, the pairs of every k-th prompt (batch index k-1, 2k-1, ...)
    are held back, the rest trained on; with k = 0 every pair is trained on."""
    check_values("selector_reward", holdout_every=every)
    if every == 0:
        return list(pairs), []
    trained = [pair for pair in pairs if pair[0] % every != every - 1]
    held = [pair for pair in pairs if pair[0] % every == every - 1]
    return trained, held
