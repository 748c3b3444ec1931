"""What the guard did in a sweep's jobs (`guard=dev_rollback`, laser/guard/dev_rollback.py): per task and
method, over seeds, how many of its checks undid steps, how often each category fell, and how many decisions it
penalised. Read from each job's `results.json` iterations (`guard/*` keys); jobs without a guard have none."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from laser.report.jobs import Job

FELL = "guard/fell"


def guard_summary(jobs: list[Job]) -> dict[str, dict[str, dict[str, Any]]]:
    """task -> method -> {seeds, checks, undone, penalised, fell: {category: count}}, each a mean over seeds."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        records = [r for r in job.results.get("iterations", []) if "guard/rolled_back" in r]
        if not records:
            continue
        fell: dict[str, float] = defaultdict(float)
        for record in records:
            for key, value in record.items():
                if key == FELL or key.startswith(FELL + "/"):
                    fell[key[len(FELL) + 1:] or "(all)"] += value
        runs[(job.task, job.method)].append({"checks": sum(r.get("guard/checks", 1.0) for r in records), "fell": fell,
                                             "undone": sum(r["guard/rolled_back"] for r in records),
                                             "penalised": sum(r.get("guard/penalised", 0.0) for r in records)})
    summary: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (task, method), seeds in sorted(runs.items()):
        categories = sorted({c for s in seeds for c in s["fell"]})
        summary[task][method] = {
            "seeds": len(seeds), **{k: sum(s[k] for s in seeds) / len(seeds) for k in ("checks", "undone", "penalised")},
            "fell": {c: sum(s["fell"].get(c, 0.0) for s in seeds) / len(seeds) for c in categories}}
    return dict(summary)


def guard_section(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """report.md's guard section (none without guarded jobs)."""
    if not summary:
        return []
    lines = ["", "## Guard: checks on the dev set and the steps undone", "",
             "Means over seeds: the guard's checks, those undone (a category's dev accuracy more than max_drop below "
             "its best), how often each category fell, and the decisions given the penalty reward."]
    for task, methods in summary.items():
        categories = sorted({c for row in methods.values() for c in row["fell"]})
        lines += ["", f"### {task}", "", "| method | seeds | checks | undone | " + " | ".join(
            f"fell: {c}" for c in categories) + " | penalised |", "|" + " --- |" * (len(categories) + 5)]
        for method, row in methods.items():
            cells = [method, str(row["seeds"]), f"{row['checks']:.1f}", f"{row['undone']:.1f}",
                     *(f"{row['fell'].get(c, 0.0):.1f}" for c in categories), f"{row['penalised']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines
