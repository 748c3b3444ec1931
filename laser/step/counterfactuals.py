"""Counterfactual diagnostics (`laser.counterfactuals=true`): at every step, what each RM of the pool would
have given on the same samples, had the bandit chosen it.

The bandit sees one number per step, from one RM, at one point of training; whether that number ranks
RMs the way their real quality does cannot be read off it. Here every RM scores the step's samples, builds
its pairs, and takes a virtual update (the step's own update, then undone: `LaserModule._update`), and each RM's
raw selector reward, its normalised value (`peek`: nothing learns), the parts of its training loss, the gold
accuracy of its pairs and the fraction it inverts (chosen wrong, rejected right) go into `counterfactuals.jsonl` (rank 0's share of the batch). Nothing of
the run changes: RM noise streams and call counters, the adapter and the optimiser state are restored,
so a run's decisions are the same with diagnostics on or off (tested).

Cost: K RM scorings and K extra updates per step; meant for pools whose scoring is cheap (verifiers,
small RMs) and small policies. `laser.report` reads the file: per category, how the reward ranks the RMs
against how gold accuracy ranks them, and the regret of the decisions taken.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from laser.policy.policy import Samples
from laser.rewards.base import ScoringBatch
from laser.rewards.pool import RewardModelPool
from laser.runs.files import append_jsonl
from laser.selection.selector_reward.base import SelectorReward
from laser.step import records
from laser.step.decisions import Decision
from laser.step.pairs import build_preference_pairs
from laser.step.preference import Pair
from laser.step.update import Update
from laser.tasks.base import Example, Task

FILE = "counterfactuals.jsonl"
VirtualUpdate = Callable[[list[Pair]], Update]  # the step's update on some pairs, measured and then undone


def every_rm_scores(pool: RewardModelPool, task: Task, batch: list[Example], prompts: list[str],
                    responses: list[str]) -> dict[int, torch.Tensor]:
    """Each RM's scores [B, n] of the step's responses (n per prompt), with the pool's noise streams and
    counters restored afterwards (so the run goes on as if nothing was scored)."""
    n = len(responses) // len(batch)
    saved = copy.deepcopy(pool.state_dict())
    rows = range(len(responses))
    scoring = ScoringBatch(prompts=[prompts[r // n] for r in rows], responses=list(responses),
                           examples=[batch[r // n] for r in rows], task=task)
    try:
        scores = pool.score(list(range(len(pool))), scoring)
    finally:
        pool.load_state_dict(saved)
    return {arm: s.view(len(batch), n) for arm, s in scores.items()}


def gold_pair_inverted(task: Task, batch: list[Example], responses: list[str], n: int,
                       pairs: list[tuple[int, int, int]]) -> float | None:
    """Fraction of pairs whose chosen response is wrong and rejected right by the gold answers (the mirror
    of `records.gold_pair_accuracy`; None likewise): with both, the report's monitor reads how often an RM
    orders the pairs gold can order."""
    if not pairs or not all(example.answer for example in batch):
        return None
    wrong = [not task.is_correct(responses[p * n + c], batch[p]) and task.is_correct(responses[p * n + r], batch[p])
             for p, c, r in pairs]
    return sum(wrong) / len(pairs)


@dataclass
class Counterfactuals:
    """Appends one line per step to `folder`/counterfactuals.jsonl: per RM of `pool`, what the step would have
    measured had the bandit chosen it. Made on the process that writes the run's files."""

    pool: RewardModelPool
    task: Task
    reward: SelectorReward  # the run's selector reward: `measure`d, and normalised by `peek` (it learns nothing)
    pairs_per_prompt: int
    folder: Path

    def record(self, batch: list[Example], prompts: list[str], samples: Samples, decisions: list[Decision],
               virtual_update: VirtualUpdate, step: int, iteration: int) -> None:
        """The step's line (batch decisions only: one decision per step)."""
        if len(decisions) != 1:
            return
        decision = decisions[0]
        categories: dict[str, int] = {}
        for example in batch:
            if example.category:
                categories[example.category] = categories.get(example.category, 0) + 1
        line = {"step": step, "iteration": iteration, "categories": categories,
                "chosen": [self.pool.names[a] for a in decision.selection.arms], "reward": self.reward.name,
                "arms": self.arms(batch, prompts, samples, decision.context, virtual_update)}
        append_jsonl(self.folder / FILE, [line])

    def arms(self, batch: list[Example], prompts: list[str], samples: Samples, context: torch.Tensor,
             virtual_update: VirtualUpdate) -> dict[str, dict[str, Any]]:
        """Per RM: its pairs' count and gold accuracy, its training loss (and the DPO and NLL parts), and the
        selector reward's raw and normalised value (as if it had been chosen)."""
        n = len(samples.texts) // len(batch)
        responses = [[tuple(samples.response_ids[p * n + j]) for j in range(n)] for p in range(len(batch))]
        arms: dict[str, dict[str, Any]] = {}
        for arm, scores in every_rm_scores(self.pool, self.task, batch, prompts, samples.texts).items():
            pairs = build_preference_pairs(scores, self.pairs_per_prompt, responses=responses)
            line: dict[str, Any] = {"pairs": len(pairs), "gold_pair_accuracy": records.gold_pair_accuracy(
                self.task, batch, samples.texts, n, pairs), "gold_pair_inverted": gold_pair_inverted(
                self.task, batch, samples.texts, n, pairs)}
            if pairs:
                evidence, loss, metrics = virtual_update(pairs)
                raw = self.reward.measure(evidence)
                line.update({"loss": float(loss), "dpo_loss": metrics["train/dpo_loss"],
                             "nll_loss": metrics["train/nll_loss"], "reward_raw": raw,
                             "reward_normalised": None if raw is None else self.reward.peek(raw, context)})
            arms[self.pool.names[arm]] = line
        return arms
