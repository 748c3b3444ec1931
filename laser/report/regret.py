"""Pseudo-regret of a sweep's decisions against the per-category oracle RM.

For each task and category, each RM's mean `gold_pair_accuracy` is estimated from ALL decisions in
the sweep that used that RM alone (whatever the method); the oracle arm is the RM with the highest
mean. A decision's pseudo-regret is the oracle's mean minus the chosen RM's mean for the decision's
(majority) category. It is estimated from the sweep's own decisions, so it is only as good as those
estimates: an RM that was rarely chosen has a noisy mean.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from laser.report.jobs import Job, majority_category
from laser.report.stats import Summary, summarise


def gold_arm_means(selections: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{category: {RM: mean gold_pair_accuracy}} over the decisions that used one RM alone and
    had pairs to judge (ensemble decisions say nothing about a single RM)."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in selections:
        if isinstance(line.get("arm_name"), str) and line.get("gold_pair_accuracy") is not None:
            values[majority_category(line.get("categories") or {})][line["arm_name"]].append(
                float(line["gold_pair_accuracy"]))
    return {c: {arm: statistics.fmean(v) for arm, v in sorted(arms.items())} for c, arms in sorted(values.items())}


def pseudo_regret(selections: list[dict[str, Any]], arm_means: dict[str, dict[str, float]]) -> list[float]:
    """Cumulative pseudo-regret after each step (index = step) of one job's decisions.

    Each single-RM decision adds max_k mean[c][k] - mean[c][chosen] for its majority category c.
    Decisions without an estimate for their RM and category (and ensemble decisions) add nothing.
    """
    if not selections:
        return []
    per_step = [0.0] * (max(int(line["step"]) for line in selections) + 1)
    for line in selections:
        means = arm_means.get(majority_category(line.get("categories") or {}), {})
        if isinstance(line.get("arm_name"), str) and line["arm_name"] in means:
            per_step[int(line["step"])] += max(means.values()) - means[line["arm_name"]]
    cumulative, total = [], 0.0
    for regret in per_step:
        total += regret
        cumulative.append(total)
    return cumulative


Curves = dict[str, dict[str, dict[int, list[float]]]]  # {task: {method: {seed: cumulative regret}}}


def regret_curves(jobs: list[Job]) -> tuple[dict[str, dict[str, dict[str, float]]], Curves]:
    """Per task: the arm means (from all the task's decisions) and, per method and seed, the
    cumulative pseudo-regret (jobs sharing a seed averaged step by step, cut to the shortest).
    Ensemble-only methods get no curve; tasks without any gold_pair_accuracy are left out."""
    means: dict[str, dict[str, dict[str, float]]] = {}
    curves: Curves = {}
    for task in sorted({j.task for j in jobs}):
        task_jobs = [j for j in jobs if j.task == task]
        means[task] = gold_arm_means(line for j in task_jobs for line in j.selections)
        if not means[task]:
            del means[task]
            continue
        by_run: dict[str, dict[int, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
        for job in task_jobs:
            if any(isinstance(s.get("arm_name"), str) for s in job.selections):
                by_run[job.method][job.seed].append(pseudo_regret(job.selections, means[task]))
        curves[task] = {method: {seed: [statistics.fmean(v) for v in zip(*runs, strict=False)] for seed, runs in sorted(seeds.items())}
                        for method, seeds in sorted(by_run.items())}
    return means, curves


def regret_summary(curves: Curves) -> dict[str, dict[str, Summary]]:
    """{task: {method: final cumulative pseudo-regret, summarised over seeds}}."""
    return {task: {method: summarise(c[-1] for c in seeds.values() if c) for method, seeds in by_method.items()}
            for task, by_method in curves.items()}
