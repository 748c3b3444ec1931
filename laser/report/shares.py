"""Which RM each method chose, per category, in the last iteration of its runs: where a bandit ends up.

A run's share of RM r in category c is the fraction of its last-iteration decisions on batches of (majority)
category c that chose r alone; a method's share is the mean over its runs (seeds), with the runs' minimum,
so one locked-in seed is not hidden by the others. Ensembles (several RMs per decision) have no shares.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from laser.report.jobs import Job, majority_category


def run_shares(selections: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """{category: {rm: share}} of one run's single-RM decisions in its last iteration."""
    decided = [s for s in selections if isinstance(s.get("arm_name"), str) and s.get("iteration") is not None]
    if not decided:
        return {}
    last = max(s["iteration"] for s in decided)
    counts: dict[str, Counter] = defaultdict(Counter)
    for s in decided:
        if s["iteration"] == last:
            counts[majority_category(s.get("categories") or {})][s["arm_name"]] += 1
    return {category: {rm: n / sum(c.values()) for rm, n in c.items()} for category, c in counts.items()}


def last_iteration_shares(jobs: list[Job]) -> dict[str, dict[str, dict[str, dict[str, dict[str, float]]]]]:
    """{task: {method: {category: {rm: {"mean": share, "min": lowest run's share}}}}} over each method's runs."""
    runs: dict[tuple[str, str], list[dict[str, dict[str, float]]]] = defaultdict(list)
    for job in jobs:
        shares = run_shares(job.selections)
        if shares:
            runs[(job.task, job.method)].append(shares)
    out: dict[str, dict[str, dict[str, dict[str, dict[str, float]]]]] = defaultdict(dict)
    for (task, method), per_run in sorted(runs.items()):
        categories = sorted({c for shares in per_run for c in shares})
        out[task][method] = {}
        for category in categories:
            rms = sorted({rm for shares in per_run for rm in shares.get(category, {})})
            values = {rm: [shares.get(category, {}).get(rm, 0.0) for shares in per_run] for rm in rms}
            out[task][method][category] = {rm: {"mean": sum(v) / len(v), "min": min(v)} for rm, v in values.items()}
    return dict(out)


def rm_calls_by_rm(jobs: list[Job]) -> dict[str, dict[str, dict[str, float]]]:
    """{task: {method: {rm: responses scored per run}}}: `results.json`'s `rm_calls`, mean over the method's
    runs (an RM a run never called counts 0), so the cost of each arm sits beside its share."""
    runs: dict[tuple[str, str], list[dict[str, int]]] = defaultdict(list)
    for job in jobs:
        runs[(job.task, job.method)].append(job.results.get("rm_calls", {}))
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (task, method), per_run in sorted(runs.items()):
        rms = sorted({rm for calls in per_run for rm in calls})
        out[task][method] = {rm: sum(calls.get(rm, 0) for calls in per_run) / len(per_run) for rm in rms}
    return dict(out)
