"""Bandit decisions within one LASeR step: who chooses for which prompts, and scoring by the choice.

With `granularity=batch` (the paper) there is one decision for the whole batch, on the mean of the
prompts' contexts; with `granularity=instance` there is one per prompt. With several processes the
decision is made once for the global batch and shared (`shared_decision`). Each chosen RM scores
only the responses of the prompts that chose it, in one call (`score_decisions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from laser.distributed.processes import from_rank_zero, ranks_where, rows_of_every_rank
from laser.errors import LaserConfigError
from laser.rewards.base import ScoringBatch
from laser.rewards.pool import RewardModelPool
from laser.selection.base import Selection, Selector
from laser.tasks.base import Example, Task


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


def score_decisions(pool: RewardModelPool, selector: Selector, decisions: list[Decision], batch: list[Example],
                    prompts: list[str], responses: list[str], n: int, task: Task
                    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Scores [B, n] combined per decision, and each arm's raw scores [B, n] (NaN where it did not score).

    Each arm runs once, on the responses of every prompt whose decision chose it."""
    size = len(batch)
    prompts_of_arm: dict[int, list[int]] = {}
    for decision in decisions:
        for arm in decision.selection.arms:
            prompts_of_arm.setdefault(arm, []).extend(decision.prompts)
    per_arm: dict[int, torch.Tensor] = {}
    for arm, indices in prompts_of_arm.items():
        rows = [i * n + j for i in indices for j in range(n)]
        scoring = ScoringBatch(prompts=[prompts[r // n] for r in rows], responses=[responses[r] for r in rows],
                               examples=[batch[r // n] for r in rows], task=task)
        full = torch.full((size, n), float("nan"))
        full[indices] = pool.score([arm], scoring)[arm].view(len(indices), n)
        per_arm[arm] = full
    combined = torch.full((size, n), float("nan"))
    for decision in decisions:
        chosen = {arm: per_arm[arm][decision.prompts] for arm in decision.selection.arms}
        combined[decision.prompts] = selector.combine(chosen).view(len(decision.prompts), n)
    return combined, per_arm
