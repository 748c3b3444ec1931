"""What a LASeR step writes down for later tools, and logs (rank 0 writes the files).

- `selections.jsonl`: one line per bandit decision (`selection_line`): the chosen RM(s), the raw and
  normalised reward, the prompts' categories, the propensity, and `gold_pair_accuracy` (how good the
  chosen RM's preferences were by the gold answers: the report's pseudo-regret reads it), or why the
  step was skipped.
- `samples.jsonl` (and a W&B table): every `log_samples_every` steps, two prompts' sampled responses
  with their scores and the RM(s) that scored them (`sample_rows`).
- the step's logged metrics (`step_metrics`), beside the loss's own (`laser.step.preference`), and
  each iteration's cost (`iteration_metrics`).
- `model_outputs/iteration-<i>.json`: each evaluation's responses, for tasks judged by an outside
  tool (AlpacaEval's `model_outputs.json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from laser.policy.policy import Samples
from laser.runs.files import append_jsonl
from laser.selection.base import Selector
from laser.step.decisions import Decision
from laser.tasks.base import Example, Task

SAMPLE_COLUMNS = ["step", "rm", "prompt", "response", "score", "gold"]


# ---- the records of a LaserModule's step (`module` is the LaserModule taking the step) -------------

def writes_files(module: L.LightningModule) -> bool:
    """Whether this process writes the run's files: rank 0, when the run has an output folder."""
    return module.output_dir is not None and module.trainer.is_global_zero


def record_decision(module: L.LightningModule, decision: Decision, batch: list[Example],
                    reward_raw: float | None = None, reward: float | None = None, **extra: Any) -> None:
    """Count the decision's RMs and append its line to selections.jsonl (`selection_line`)."""
    names = [module.rm_pool.names[a] for a in decision.selection.arms]
    module.tracker.on_decision(names)
    if writes_files(module):
        line = selection_line(module.tracker.steps - 1, module.current_epoch + 1, decision, names, batch,
                              reward_raw, reward, **extra)
        append_jsonl(module.output_dir / "selections.jsonl", [line])


def record_skip(module: L.LightningModule, reason: str, decisions: list[Decision], batch: list[Example]) -> None:
    """A step without an update: counted (`skipped/<reason>`), recorded, and the selector not rewarded."""
    module.tracker.skipped[reason] += 1
    for decision in decisions:
        record_decision(module, decision, batch, skipped=reason)
    module.log(f"skipped/{reason}", float(module.tracker.skipped[reason]), on_step=True, batch_size=len(batch))


def log_step(module: L.LightningModule, metrics: dict[str, float], decisions: list[Decision], batch: list[Example],
             prompts: list[str], responses: list[str], scores: torch.Tensor) -> None:
    """Log the step's metrics (and the progress bar's rm and reward); every `log_samples_every` steps,
    the sampled responses with their scores (`sample_rows`: samples.jsonl, and a W&B table)."""
    step = module.tracker.steps - 1
    if module.log_samples_every and step % module.log_samples_every == 0 and writes_files(module):
        rows = sample_rows(step, decisions, module.rm_pool.names, batch, prompts, responses, scores,
                           module.num_samples)
        write_samples(module.output_dir / "samples.jsonl", rows, module.loggers, module.global_step)
    module.log_dict(metrics, on_step=True, on_epoch=False, prog_bar=False, batch_size=len(batch))
    module.log("rm", float(decisions[0].selection.arms[0]), prog_bar=True, on_step=True, batch_size=len(batch))
    if "bandit/reward" in metrics:
        module.log("reward", metrics["bandit/reward"], prog_bar=True, on_step=True, batch_size=len(batch))


# ---- the lines, rows and metrics themselves ---------------------------------------------------------


def gold_pair_accuracy(task: Task, batch: list[Example], responses: list[str], n: int,
                       pairs: list[tuple[int, int, int]]) -> float | None:
    """Fraction of pairs whose chosen response is right and rejected wrong by the gold answers
    (None without pairs or gold answers): how good the chosen RM's preferences were, for reports."""
    if not pairs or not all(example.answer for example in batch):
        return None
    good = sum(task.is_correct(responses[p * n + c], batch[p]) and not task.is_correct(responses[p * n + r], batch[p])
               for p, c, r in pairs)
    return good / len(pairs)


def selection_line(step: int, iteration: int, decision: Decision, names: list[str], batch: list[Example],
                   reward_raw: float | None, reward: float | None, skipped: str | None = None,
                   gold_pair_accuracy: float | None = None, chosen_score: float | None = None) -> dict[str, Any]:
    """The `selections.jsonl` line of one decision (an ensemble's arms as lists); `chosen_score`, the one
    chosen RM's mean score of the responses it preferred (`laser.step.pairs.mean_chosen_score`)."""
    arms = decision.selection.arms
    categories: dict[str, int] = {}
    for index in decision.prompts:
        if batch[index].category:
            categories[batch[index].category] = categories.get(batch[index].category, 0) + 1
    line = {"step": step, "iteration": iteration,
            "arm": arms[0] if len(arms) == 1 else list(arms), "arm_name": names[0] if len(names) == 1 else names,
            "reward_raw": reward_raw, "reward_normalised": reward, "categories": categories,
            "propensity": decision.selection.propensity, "gold_pair_accuracy": gold_pair_accuracy,
            "chosen_score": chosen_score}
    if skipped:
        line["skipped"] = skipped
    return line


def sample_rows(step: int, decisions: list[Decision], arm_names: list[str], batch: list[Example],
                prompts: list[str], responses: list[str], scores: torch.Tensor, n: int,
                shown_prompts: int = 2) -> list[list[Any]]:
    """Rows of `SAMPLE_COLUMNS`: the first prompts' responses, each with its score and the RM(s) that
    scored it."""
    rm_of_prompt = {p: "+".join(arm_names[a] for a in d.selection.arms) for d in decisions for p in d.prompts}
    return [[step, rm_of_prompt[p], prompts[p], responses[p * n + j], float(scores[p, j]), batch[p].answer]
            for p in range(min(shown_prompts, len(batch))) for j in range(n)]


def write_samples(path: Path, rows: list[list[Any]], loggers: list, step: int) -> None:
    """Append `sample_rows` to samples.jsonl, and log them as a table where a logger takes one (W&B)."""
    append_jsonl(path, [dict(zip(SAMPLE_COLUMNS, row, strict=True)) for row in rows])
    for logger in loggers:
        if hasattr(logger, "log_table"):  # W&B
            logger.log_table(key="samples", columns=SAMPLE_COLUMNS, data=rows, step=step)


def step_metrics(loss: torch.Tensor, pairs: list[tuple[int, int, int]], samples: Samples,
                 decisions: list[Decision], selector: Selector) -> dict[str, float]:
    """The step's loss, pairs, responses truncated by the length limit and cut at a stop string, the
    (first) decision's arm and propensity, and the selector's own diagnostics."""
    metrics = {"train/loss": float(loss.detach()), "train/pairs": float(len(pairs)),
               "train/truncated_responses": float(samples.num_truncated),
               "train/stopped_responses": float(samples.num_stopped),
               "bandit/arm": float(decisions[0].selection.arms[0])}
    if decisions[0].selection.propensity is not None:
        metrics["bandit/propensity"] = decisions[0].selection.propensity
    metrics.update(selector.diagnostics())
    return metrics


def iteration_metrics(phase_seconds: dict[str, float], generated_tokens: int, rm_calls: dict[str, int],
                      rm_tokens: dict[str, int]) -> dict[str, float]:
    """An iteration's cost, logged at its end: seconds per phase of the step (this process), tokens
    generated, and RM calls and input tokens per RM (summed over ranks)."""
    metrics = {f"time/{phase}": seconds for phase, seconds in phase_seconds.items()}
    metrics["tokens/generated"] = float(generated_tokens)
    metrics.update({f"rm_calls/{name}": float(c) for name, c in rm_calls.items()})
    metrics.update({f"rm_tokens/{name}": float(c) for name, c in rm_tokens.items()})
    return metrics


def write_model_outputs(task: Task, folder: Path, iteration: int, responses: list[str], examples: list[Example],
                        generator: str) -> None:
    """An evaluation's responses in the format of the task's outside judge, if it has one (AlpacaEval)."""
    writer = getattr(task, "write_alpaca_eval_outputs", None)
    if writer:
        folder.mkdir(exist_ok=True)
        writer(folder / f"iteration-{iteration}.json", responses, examples, generator=generator)
