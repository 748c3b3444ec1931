"""An RM that fails during a step: the step is skipped, the fault counted, and (on_rm_fault=penalise) the
arm that chose the RM rewarded 0, so the bandit learns to avoid it. The run goes on.

A fault is an RM that raises, hangs or returns the wrong number of scores (`RewardModelError`, raised
by the pool) or returns NaN/inf scores. Configuration mistakes are not faults: they stop the run.
"""

from __future__ import annotations

import logging

import torch

from laser.rewards.errors import RewardModelError
from laser.rewards.pool import RewardModelPool
from laser.runs.results import IterationTracker
from laser.selection.base import Selector
from laser.step.decisions import Decision, score_decisions
from laser.tasks.base import Example, Task

log = logging.getLogger(__name__)


def score_or_fault(pool: RewardModelPool, selector: Selector, decisions: list[Decision], batch: list[Example],
                   prompts: list[str], responses: list[str], n: int, task: Task
                   ) -> tuple[torch.Tensor | None, dict[int, torch.Tensor] | None, RewardModelError | None]:
    """`score_decisions`' scores and per-arm scores, and the fault of an RM that failed (else None)."""
    try:
        scores, per_arm = score_decisions(pool, selector, decisions, batch, prompts, responses, n, task)
    except RewardModelError as error:  # raised, hung or miscounted: the RM's fault, not the run's
        return None, None, error
    if not torch.isfinite(scores).all():
        bad = sorted({pool.names[a] for d in decisions if not torch.isfinite(scores[d.prompts]).all()
                      for a in d.selection.arms})
        return scores, per_arm, RewardModelError(bad[0], "nonfinite_scores", f"{bad} returned NaN/inf scores")
    return scores, per_arm, None


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
