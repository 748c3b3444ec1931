"""Bandit decisions within one LASeR step: who chooses for which prompts.

With `granularity=batch` (the paper) there is one decision for the whole batch, on the mean of the
prompts' contexts; with `granularity=instance` there is one per prompt. With several processes the
decision is made once for the global batch and shared (`shared_decision`). Each chosen RM then scores
only the responses of the prompts that chose it, in one call (laser/step/scoring.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from laser.distributed.processes import from_rank_zero, ranks_where, rows_of_every_rank
from laser.errors import LaserConfigError
from laser.selection.base import Selection, Selector


@dataclass
class Decision:
    """One selector decision: the prompts it covers, the context it saw, what it chose."""

    prompts: list[int]
    context: torch.Tensor
    selection: Selection


def decide(selector: Selector, contexts: torch.Tensor) -> list[Decision]:
    """Ask the selector once per batch (mean context, re-normalised) or once per prompt."""
    if selector.granularity == "instance":
        return [Decision([i], contexts[i], selector.select(contexts[i])) for i in range(len(contexts))]
    context = F.normalize(contexts.mean(0), dim=0)
    return [Decision(list(range(len(contexts))), context, selector.select(context))]


def shared_decision(trainer, selector: Selector, contexts: torch.Tensor) -> tuple[list[Decision], int]:
    """The selector's decisions (`decide`), and how many ranks disagreed with rank 0. In several
    processes: one decision for the global batch, made from the mean context of every rank's
    prompts, rank 0's choice applied everywhere (a rank that chose otherwise is counted)."""
    if trainer.world_size == 1:
        return decide(selector, contexts), 0
    if selector.granularity != "batch":
        raise LaserConfigError("bandit.granularity=instance is not supported with several processes "
                               "(each rank would train its own bandit); use bandit.granularity=batch")
    decision = decide(selector, rows_of_every_rank(trainer, contexts))[0]
    chosen = from_rank_zero(trainer, decision.selection)
    disagreeing = ranks_where(trainer, chosen.arms != decision.selection.arms)
    return [Decision(list(range(len(contexts))), decision.context, chosen)], disagreeing
