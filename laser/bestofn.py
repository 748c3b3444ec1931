"""Best-of-n answer selection with a bandit-chosen RM: LASeR's long-context setting (no training).

    python -m laser.bestofn                                    # HotpotQA (local), tiny policy, tiny_qa RMs
    python -m laser.bestofn task.limit=50 num_samples=8 bandit=random
    python -m laser.bestofn -m bandit=linucb,random,score_ensemble,single_0,single_1,single_2

For each batch of questions, top to bottom:
  1. contexts: the bandit's view of each question (the `context` group, as in training runs);
  2. ONE decision per question (`bandit.granularity` is forced to "instance");
  3. n answers per question from one batched `generate` call (`num_samples`), ending at EOS or the
     task's stop strings, each cut to its first line (`LongContextQA.extract_answer`): what the RMs
     score and F1 grades;
  4. only the chosen RM(s) score that question's answers (`scoring.score_decisions`);
  5. the best-scored answer is the prediction; its token F1 against the golds is reported;
  6. the bandit is updated with a reward normalised to [0, 1] by `QuantileNormaliser`.
Baselines come from `bandit=`: random, score_ensemble (all RMs, z-scored and averaged), single_k.

The reward. In training runs the bandit learns from the DPO loss; here nothing is trained, so the
reward must come from the answers themselves. `reward=consensus` (default) is the mean token F1
between the picked answer and the other n-1 samples: a label-free, minimum-Bayes-risk style
agreement score. Answers the policy converges on are more often right (self-consistency), so an RM
that keeps picking outliers earns less, and the signal exists at inference time, where a deployed
system has no gold answers. `reward=gold` (the picked answer's F1 against the golds) uses labels:
it shows what a bandit could learn with perfect feedback, for analysis only, and results.json flags it.

Assumptions: the task grades free-text answers by F1 (`LongContextQA`); num_samples >= 2 (best-of-1
has nothing to choose and consensus needs another sample). Writes `results.json` (final:
test/f1, test/f1/<subset>, test/oracle_f1 = best of n by gold F1, an upper bound, and
test/first_sample_f1 = no selection; `iterations` 0 and 1 hold the first-sample and best-of-n
figures so `python -m laser.report` reads a best-of-n sweep) and `selections.jsonl` (one line per
decision, with its F1 and picked answer).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from laser.config.checks import CONF_DIR, check_config, check_group_choices
from laser.config.instantiate import instantiate
from laser.errors import LaserConfigError
from laser.runs.files import write_json_atomically
from laser.runs.folder import prepare_output_dir, run_job
from laser.runs.provenance import environment
from laser.runs.results import method_label
from laser.selection.base import StepFeedback
from laser.step.decisions import Decision, decide
from laser.step.scoring import score_decisions
from laser.tasks.longcontext import gold_answers
from laser.tasks.qa_metrics import best_f1, consensus_f1

log = logging.getLogger("laser")
REWARDS = {"consensus": False, "gold": True}  # reward signal -> whether it reads gold answers


def pick_best(scores: torch.Tensor) -> list[int]:
    """Index of the best-scored answer per row of [B, n] scores; NaN never wins, ties go to the
    earliest sample, and a row without any finite score picks sample 0."""
    finite = torch.where(torch.isnan(scores), torch.full_like(scores, -torch.inf), scores)
    return [int(i) for i in finite.argmax(dim=1)]


def decision_reward(signal: str, answers: list[str], pick: int, golds: list[str]) -> float:
    """The raw bandit reward for one question: consensus (agreement with the other samples) or gold F1."""
    if signal == "consensus":
        return consensus_f1(answers, pick)
    return best_f1(answers[pick], golds)


def check_settings(cfg: DictConfig) -> None:
    """Fail before any model loads on a bad knob; force one bandit decision per question."""
    if cfg.reward not in REWARDS:
        raise LaserConfigError(f"reward={cfg.reward!r} is not one of {list(REWARDS)}")
    check_config(cfg)  # every knob's type and range (conf/bestofn.yaml's own: num_samples, batch_size)
    if cfg.get("resume"):
        raise LaserConfigError("best-of-n runs cannot be resumed (nothing is checkpointed): rerun without resume=")
    if cfg.bandit.get("granularity", "instance") != "instance":
        log.info("bandit.granularity=%s -> instance: best-of-n makes one RM choice per question",
                 cfg.bandit.granularity)
    with open_dict(cfg):
        cfg.bandit.granularity = "instance"  # so the saved config says what ran


def build(cfg: DictConfig) -> dict[str, Any]:
    """Task, RM pool, selector (one decision per question), context, normaliser, policy."""
    task = instantiate(cfg.task)
    if not hasattr(task, "f1"):
        raise LaserConfigError(f"task {task.name!r} does not grade by F1; best-of-n needs task=hotpotqa or longbench")
    pool = instantiate(cfg.rm_pool, _convert_="all")
    selector = instantiate(cfg.bandit, num_arms=len(pool), arm_names=pool.names, _convert_="all")
    context = instantiate(cfg.context)
    normaliser = instantiate(cfg.reward_normaliser)
    examples = task.test_examples()
    if not examples:
        raise LaserConfigError(f"task {task.name!r} has no test questions")
    warm_steps = (cfg.policy.get("warm_start") or {}).get("steps", 0)
    if warm_steps and not task.train_examples():
        raise LaserConfigError("policy.warm_start needs training rows: set task.train_limit > 0 (with a "
                               "task.limit below the file size) or policy.warm_start.steps=0")
    policy = instantiate(cfg.policy, task=task, _convert_="all")  # last: loading may take minutes
    return {"task": task, "pool": pool, "selector": selector, "context": context, "normaliser": normaliser,
            "examples": examples, "policy": policy}


def answer_batch(parts: dict[str, Any], batch: list, n: int) -> dict[str, Any]:
    """Decide, sample, score with the chosen RMs and pick, for one batch of questions."""
    task, policy = parts["task"], parts["policy"]
    prompts = [task.format_prompt(example) for example in batch]
    encoded = policy.encode(prompts)
    contexts = parts["context"](policy, encoded, prompts)
    decisions = decide(parts["selector"], contexts)
    samples = policy.sample(encoded, n, stop_strings=task.stop_strings)  # n per question, one generate call
    answers = [task.extract_answer(text) for text in samples.texts]
    scores, per_arm = score_decisions(parts["pool"], parts["selector"], decisions, batch, prompts, answers, n, task)
    return {"decisions": decisions, "answers": answers, "scores": scores, "per_arm": per_arm,
            "picks": pick_best(scores), "generated_tokens": samples.num_generated_tokens}


def learn(parts: dict[str, Any], signal: str, decision: Decision, outcome: dict[str, Any], n: int,
          golds: list[str]) -> tuple[float | None, float | None]:
    """Reward the decision's selection; (raw, normalised), or (None, None) when no RM score was finite."""
    i = decision.prompts[0]
    if not torch.isfinite(outcome["scores"][i]).any():
        return None, None
    pick = outcome["picks"][i]
    answers = outcome["answers"][i * n:(i + 1) * n]
    raw = decision_reward(signal, answers, pick, golds)
    normalised = parts["normaliser"](raw)
    # Pairs as in training feedback: the picked answer preferred to each other sample of this question.
    feedback = StepFeedback(scores=outcome["per_arm"], pairs=[(i, pick, j) for j in range(n) if j != pick])
    parts["selector"].update(decision.selection, decision.context, normalised, feedback)
    return raw, normalised


@dataclass
class Tally:
    """What a run has produced so far: one row per question, RM choices, tokens, skipped updates."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    selection_counts: Counter = field(default_factory=Counter)
    generated_tokens: int = 0
    skipped_updates: int = 0


def settle(parts: dict[str, Any], signal: str, decision: Decision, outcome: dict[str, Any], batch: list,
           n: int, tally: Tally) -> dict[str, Any]:
    """Grade one question's pick, update the bandit, tally it; returns its selections.jsonl line."""
    i = decision.prompts[0]
    example, golds = batch[i], gold_answers(batch[i])
    answers = outcome["answers"][i * n:(i + 1) * n]
    sample_f1 = [best_f1(answer, golds) for answer in answers]
    pick = outcome["picks"][i]
    raw, normalised = learn(parts, signal, decision, outcome, n, golds)
    tally.skipped_updates += raw is None
    names = [parts["pool"].names[a] for a in decision.selection.arms]
    tally.selection_counts.update(names)
    tally.rows.append({"category": example.category, "f1": sample_f1[pick], "oracle_f1": max(sample_f1),
                       "first_f1": sample_f1[0]})
    return {"uid": example.uid, "arm": _one_or_all(decision.selection.arms), "arm_name": _one_or_all(names),
            "reward_raw": raw, "reward_normalised": normalised, "categories": {example.category: 1},
            "propensity": decision.selection.propensity, "f1": sample_f1[pick], "answer": answers[pick]}


def f1_metrics(rows: list[dict[str, Any]], key: str = "f1") -> dict[str, float]:
    """`test/f1` and `test/f1/<subset>`: the mean of per-question `key` (picked, oracle or first F1)."""
    def mean(subset: str | None = None) -> float:
        values = [r[key] for r in rows if subset is None or r["category"] == subset]
        return sum(values) / max(len(values), 1)

    return {"test/f1": mean(), **{f"test/f1/{s}": mean(s) for s in sorted({r["category"] for r in rows})}}


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The final metrics: F1 of the picked answers (all and per subset), of the best of n by gold F1
    (an upper bound on any selector) and of the first sample (no selection)."""
    first, oracle = f1_metrics(rows, "first_f1"), f1_metrics(rows, "oracle_f1")
    return {**f1_metrics(rows), "test/oracle_f1": oracle["test/f1"], "test/first_sample_f1": first["test/f1"]}


def run(cfg: DictConfig, output_dir: Path) -> dict[str, Any]:
    """One best-of-n job; returns the results payload (also written to `results.json`)."""
    check_settings(cfg)
    cfg = prepare_output_dir(cfg, output_dir)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg.num_threads)
    parts = build(cfg)
    examples, n, tally = parts["examples"], cfg.num_samples, Tally()
    started = time.perf_counter()
    with open(output_dir / "selections.jsonl", "w") as selections:  # a fresh run: no resume here
        for step, start in enumerate(range(0, len(examples), cfg.batch_size)):
            batch = examples[start:start + cfg.batch_size]
            outcome = answer_batch(parts, batch, n)
            tally.generated_tokens += outcome["generated_tokens"]
            for decision in outcome["decisions"]:
                line = settle(parts, cfg.reward, decision, outcome, batch, n, tally)
                # iteration 1: one pass over the questions (laser.report reads the key as in training runs)
                selections.write(json.dumps({"step": step, "iteration": 1, **line}) + "\n")
            selections.flush()  # a killed run keeps every finished batch's decisions
            log.info("step %d: %d/%d questions, F1 so far %.3f", step, len(tally.rows), len(examples),
                     summarise(tally.rows)["test/f1"])
    payload = results_payload(cfg, parts, tally, time.perf_counter() - started)
    write_json_atomically(output_dir / "results.json", payload)
    log.info("done in %.1fs: %s -> %s", payload["wall_seconds"], payload["final"], output_dir / "results.json")
    return payload


def results_payload(cfg: DictConfig, parts: dict[str, Any], tally: Tally, wall_seconds: float) -> dict[str, Any]:
    """The `results.json` of a best-of-n run (the training runs' keys where they apply)."""
    task, pool, final = parts["task"], parts["pool"], summarise(tally.rows)
    counts = {name: tally.selection_counts.get(name, 0) for name in pool.names}
    return {
        "seed": cfg.seed, "wall_seconds": wall_seconds, "complete": len(tally.rows) == len(parts["examples"]),
        "method": method_label(cfg.get("method_name"), parts["selector"]), "task": task.name, "primary_metric": task.primary_metric,
        "data/skipped_rows": task.skipped_rows, "config": OmegaConf.to_container(cfg),
        "environment": environment(), "final": final,
        # As training runs write them, so laser.report's tables and plots read best-of-n sweeps too:
        # iteration 0 = the first sample (the policy alone, no RM choice: the report's "before
        # preference training (no warm start)" row, as nothing is trained here), 1 = best-of-n.
        "iterations": [{"iteration": 0, **f1_metrics(tally.rows, "first_f1")},
                       {"iteration": 1, **final, "rm_selection_counts": counts, "rm_calls": pool.call_counts(),
                        "generated_tokens": tally.generated_tokens, "wall_seconds": wall_seconds}],
        "num_questions": len(tally.rows), "num_samples": cfg.num_samples,
        "generated_tokens": tally.generated_tokens,
        "reward": {"signal": cfg.reward, "uses_gold_labels": REWARDS[cfg.reward]},
        "rm_selection_counts": counts,
        "rm_calls": pool.call_counts(),  # answers scored per RM: only chosen RMs ever run
        "skipped_updates": tally.skipped_updates,  # questions whose chosen RM gave no finite score
    }


def _one_or_all(values: list | tuple) -> Any:
    """A single arm as itself, an ensemble's arms as a list (as training runs write them)."""
    return values[0] if len(values) == 1 else list(values)


@hydra.main(version_base="1.3", config_path="../conf", config_name="bestofn")
def main(cfg: DictConfig) -> float | None:
    return run_job(run, cfg)


if __name__ == "__main__":
    check_group_choices(CONF_DIR)
    main()
