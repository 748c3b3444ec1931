"""Counterfactual diagnostics (`laser.counterfactuals=true`): at every step, what each RM of the pool would
have given on the same samples, had the bandit chosen it.

The bandit sees one number per step, from one RM, at one point of training; whether that number ranks
RMs the way their real quality does cannot be read off it. Here every RM scores the step's samples, builds
its pairs, and takes a virtual update (the step's own `update_on_pairs`, then undone), and each RM's
raw selector reward, its normalised value (`peek`: nothing learns), the parts of its training loss, the
gold accuracy of its pairs and the fraction it inverts (chosen wrong, rejected right) go into
`counterfactuals.jsonl` (rank 0's share of the batch). Nothing of the run changes: RM noise streams and
call counters, the adapter and the optimiser state are restored, so a run's decisions are the same with
diagnostics on or off (tested).

Cost: K RM scorings and K extra updates per step; meant for pools whose scoring is cheap (verifiers,
small RMs) and small policies. `laser.report` reads the file: per category, how the reward ranks the RMs
against how gold accuracy ranks them, and the regret of the decisions taken.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch

from laser.policy.policy import Samples
from laser.rewards.base import ScoringBatch
from laser.runs.files import append_jsonl
from laser.step import records
from laser.step.pairs import build_preference_pairs
from laser.step.update import update_then_undo
from laser.tasks.base import Example, Task

FILE = "counterfactuals.jsonl"


def every_rm_scores(module: L.LightningModule, batch: list[Example], prompts: list[str],
                    responses: list[str]) -> dict[int, torch.Tensor]:
    """Each RM's scores [B, n] of the step's responses, with the pool's noise streams and counters restored
    afterwards (so the run goes on as if nothing was scored)."""
    pool, n = module.rm_pool, module.num_samples
    saved = copy.deepcopy(pool.state_dict())
    rows = range(len(responses))
    scoring = ScoringBatch(prompts=[prompts[r // n] for r in rows], responses=list(responses),
                           examples=[batch[r // n] for r in rows], task=module.task)
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


def counterfactual_line(module: L.LightningModule, batch: list[Example], prompts: list[str],
                        encoded: dict[str, torch.Tensor], samples: Samples, context: torch.Tensor,
                        chosen: list[str]) -> dict[str, Any]:
    """One step's counterfactuals: per RM, its pairs' count and gold accuracy, its training loss (and the
    DPO and NLL parts), and the selector reward's raw and normalised value (as if it had been chosen)."""
    n, reward = module.num_samples, module.selector_reward
    prompt_ids = module.policy.unpadded_prompt_ids(encoded)
    responses = [[tuple(samples.response_ids[p * n + j]) for j in range(n)] for p in range(len(batch))]
    arms: dict[str, dict[str, Any]] = {}
    for arm, scores in every_rm_scores(module, batch, prompts, samples.texts).items():
        pairs = build_preference_pairs(scores, module.pairs_per_prompt, responses=responses)
        line: dict[str, Any] = {"pairs": len(pairs), "gold_pair_accuracy": records.gold_pair_accuracy(
            module.task, batch, samples.texts, n, pairs), "gold_pair_inverted": gold_pair_inverted(
            module.task, batch, samples.texts, n, pairs)}
        if pairs:
            evidence, loss, metrics = update_then_undo(module, pairs, prompt_ids, samples.response_ids)
            raw = reward.measure(evidence)
            line.update({"loss": float(loss), "dpo_loss": metrics["train/dpo_loss"], "nll_loss": metrics["train/nll_loss"],
                         "reward_raw": raw, "reward_normalised": None if raw is None else reward.peek(raw, context)})
        arms[module.rm_pool.names[arm]] = line
    categories: dict[str, int] = {}
    for example in batch:
        if example.category:
            categories[example.category] = categories.get(example.category, 0) + 1
    return {"step": module.tracker.steps - 1, "iteration": module.current_epoch + 1, "categories": categories,
            "chosen": chosen, "reward": reward.name, "arms": arms}


def record_counterfactuals(module: L.LightningModule, batch: list[Example], prompts: list[str],
                           encoded: dict[str, torch.Tensor], samples: Samples, decisions: list) -> None:
    """Append the step's counterfactuals to counterfactuals.jsonl (one line per step, batch decisions only)."""
    if not records.writes_files(module) or len(decisions) != 1:
        return
    decision = decisions[0]
    chosen = [module.rm_pool.names[a] for a in decision.selection.arms]
    line = counterfactual_line(module, batch, prompts, encoded, samples, decision.context, chosen)
    append_jsonl(module.output_dir / FILE, [line])
