"""The results table of a sweep: final accuracy per (method, task) over seeds, and the rows before
preference training.

One row per method (`results.json`'s `method`) plus a "before preference training" row (each job's
iteration-0 test accuracy), named for what the policy was (`start_row`): "(SFT: 200 steps)" after a
supervised warm start, "(no warm start)" without one, e.g. the paper configs' base Llama-3-8B, which
is not the paper's SFT policy. Final test accuracy is averaged per seed first (jobs that share
method, task and seed are one sample), then summarised over seeds: mean, sample std, and a 95%
Student-t confidence interval. Also per-category accuracy, RM calls and wall seconds per run.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from laser.report.jobs import Job
from laser.report.stats import summarise

BEFORE_TRAINING = "before preference training"  # the rows of iteration-0 accuracies (see start_row)


def per_seed_means(jobs: Iterable[Job], value: Callable[[Job], float | None]) -> dict[int, float]:
    """`value` averaged over the jobs of each seed (jobs missing the value are left out)."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for job in jobs:
        v = value(job)
        if v is not None:
            by_seed[job.seed].append(v)
    return {seed: statistics.fmean(vs) for seed, vs in sorted(by_seed.items())}


def passes_by_task(jobs: Iterable[Job]) -> dict[str, tuple[float, float] | None]:
    """Per task, the (lowest, highest) passes over its training set per iteration among its jobs (one
    value when the jobs agree); None when no job recorded it (results written before it was)."""
    passes: dict[str, list[float]] = defaultdict(list)
    tasks = set()
    for job in jobs:
        tasks.add(job.task)
        if job.passes_per_iteration is not None:
            passes[job.task].append(job.passes_per_iteration)
    return {task: (min(passes[task]), max(passes[task])) if passes[task] else None for task in sorted(tasks)}


def task_heading(task: str, passes: tuple[float, float] | None) -> str:
    """`gsm8k (1.00 passes / iteration)`: a task's column and section name, with how much of its training
    set each iteration covered (a range when its jobs differ)."""
    if passes is None:
        return task
    low, high = passes
    span = f"{low:.2f}" if round(low, 2) == round(high, 2) else f"{low:.2f}-{high:.2f}"
    return f"{task} ({span} passes / iteration)"


# ---- the table -------------------------------------------------------------------------------------


def start_row(warm_start: tuple[int, float | None] | None) -> str:
    """The name of an iteration-0 row, honest about the policy it measured: a supervised warm start
    is "SFT", no warm start is not (the paper's SFT baseline is a fine-tuned policy; a base model
    evaluated before preference training is something else), unknown says neither."""
    if warm_start is None:
        return BEFORE_TRAINING
    steps, target = warm_start
    if steps == 0:
        return f"{BEFORE_TRAINING} (no warm start)"
    if target is not None:
        return f"{BEFORE_TRAINING} (SFT to {target:g} accuracy per category, at most {steps} steps)"
    return f"{BEFORE_TRAINING} (SFT: {steps} steps)"



def _cell(jobs: list[Job], iteration: int | None, categories: list[str], cost: bool) -> dict[str, Any]:
    """One (method, task) cell: accuracy over seeds, per-category accuracy, cost per run."""
    cell: dict[str, Any] = {
        "accuracy": summarise(per_seed_means(jobs, lambda j: j.accuracy(iteration)).values()),
        "categories": {c: summarise(per_seed_means(jobs, lambda j, c=c: j.accuracy(
            iteration, f"{j.metric}/{c}")).values()) for c in categories},
        "seeds": sorted({j.seed for j in jobs}),
        "runs": len(jobs),
    }
    if cost:  # the before-training rows train nothing and call no RM
        cell["rm_calls_per_run"] = statistics.fmean(sum(j.results.get("rm_calls", {}).values()) for j in jobs)
        cell["wall_seconds_per_run"] = statistics.fmean(float(j.results.get("wall_seconds", 0.0)) for j in jobs)
    return cell


def build_table(jobs: list[Job]) -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {row: cell}}: the before-preference-training rows (iteration 0 of every job, one row per
    warm start in the sweep, so a base and a fine-tuned policy are never averaged) first, then methods
    by name."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for task in sorted({j.task for j in jobs}):
        task_jobs = [j for j in jobs if j.task == task]
        categories = sorted({c for j in task_jobs for c in j.categories()})
        table[task] = {}
        for warm in sorted({j.warm_start for j in task_jobs}, key=lambda w: (-1, 0) if w is None else (w[0], w[1] or 0)):
            start_jobs = [j for j in task_jobs if j.warm_start == warm]
            table[task][start_row(warm)] = _cell(start_jobs, 0, categories, cost=False)
        for method in sorted({j.method for j in task_jobs}):
            table[task][method] = _cell([j for j in task_jobs if j.method == method], None, categories, cost=True)
    return table
