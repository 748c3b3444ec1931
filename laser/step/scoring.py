"""Scoring a step's responses by the RMs the bandit chose, and what happens when one of them fails.

Each chosen RM runs once, on the responses of every prompt whose decision chose it (`score_decisions`);
the step reads the scores combined per decision (`Selector.combine`: one RM's, or an ensemble's) and each
arm's raw scores (what the selector's feedback sees).

A fault is an RM that raises, hangs or returns the wrong number of scores (`RewardModelError`, raised by
the pool) or returns NaN/inf scores. `score_step` returns it instead of raising, so that every rank can
skip the step together; `handle_rm_fault` counts it and, with on_rm_fault=penalise, rewards the arm that
chose the RM 0, so the bandit learns to avoid it. The run goes on. Configuration mistakes are not faults:
they stop the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from laser.rewards.base import ScoringBatch
from laser.rewards.errors import RewardModelError
from laser.rewards.pool import RewardModelPool
from laser.runs.results import IterationTracker
from laser.selection.base import Selector
from laser.step.decisions import Decision
from laser.tasks.base import Example, Task

log = logging.getLogger(__name__)


@dataclass
class StepScores:
    """What the chosen RMs gave a step: `scores` [B, n] combined per decision, each arm's raw scores
    `per_arm` [B, n] (NaN where the arm did not score), and the `fault` of an RM that failed (else None)."""

    scores: torch.Tensor | None
    per_arm: dict[int, torch.Tensor] | None
    fault: RewardModelError | None = None


def score_decisions(pool: RewardModelPool, selector: Selector, decisions: list[Decision], batch: list[Example],
                    prompts: list[str], responses: list[str], n: int, task: Task
                    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Scores [B, n] combined per decision, and each arm's raw scores [B, n] (NaN where it did not score);
    an RM's fault is raised (`RewardModelError`). Each arm runs once, on the responses (`n` per prompt) of
    every prompt whose decision chose it."""
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


def score_step(pool: RewardModelPool, selector: Selector, decisions: list[Decision], batch: list[Example],
               prompts: list[str], responses: list[str], n: int, task: Task) -> StepScores:
    """`score_decisions`, with an RM's fault returned, not raised: an RM that raised, hung or miscounted, or
    NaN/inf scores in a decision's prompts (named after the first of its RMs)."""
    try:
        scores, per_arm = score_decisions(pool, selector, decisions, batch, prompts, responses, n, task)
    except RewardModelError as error:  # raised, hung or miscounted: the RM's fault, not the run's
        return StepScores(None, None, error)
    if not torch.isfinite(scores).all():
        bad = sorted({pool.names[a] for d in decisions if not torch.isfinite(scores[d.prompts]).all()
                      for a in d.selection.arms})
        fault = RewardModelError(bad[0], "nonfinite_scores", f"{bad} returned NaN/inf scores")
        return StepScores(scores, per_arm, fault)
    return StepScores(scores, per_arm)


def handle_rm_fault(fault: RewardModelError | None, decisions: list[Decision], arm_names: list[str],
                    selector: Selector, tracker: IterationTracker, on_rm_fault: str) -> str:
    """Count the fault (`faults/<kind>`, `faults/rm/<name>`), penalise with on_rm_fault=penalise, and
    return the reason the step is skipped. `fault` is None when the RM failed on another rank."""
    kind = fault.kind if fault else "error"
    names = {fault.name} if fault else set()
    log.warning("step %d: %s (%s); step skipped%s", tracker.steps - 1,
                str(fault) if fault else "an RM fault on another rank", kind,
                ", arm penalised" if on_rm_fault == "penalise" else "")
    tracker.faults[f"faults/{kind}"] += 1
    for name in names:
        tracker.faults[f"faults/rm/{name}"] += 1
    if on_rm_fault == "penalise":
        for decision in decisions:
            if {arm_names[a] for a in decision.selection.arms} & names:
                selector.update(decision.selection, decision.context, 0.0, None)
    return kind if kind == "nonfinite_scores" else f"rm_{kind}"
