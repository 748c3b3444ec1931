"""A reward-hacking monitor: is each judge still right about what the policy now writes? (issue #21 item 2)

A bandit rewards the RM whose pairs help the policy most; nothing stops it from keeping an RM that the
policy has learnt to please, whose preferences no longer match the task. Two views:

- With gold labels and `laser.counterfactuals=true` (every RM scores the policy's live samples at every
  step): each RM's *live accuracy* per job, iteration and (majority) category: of its pairs that gold can
  order (one response right, the other wrong), the share it orders right, pooled over the steps
  (`live_accuracy`). It does not fall just because the policy gets every sample right or every sample
  wrong, which leaves no pair to order, as the plain gold pair accuracy does. Counterfactuals written
  before `gold_pair_inverted` existed fall back on the gold pair accuracy of all pairs (said in the
  report). An RM is flagged (`flagged_rms`) when its live accuracy fell below the threshold while it took
  most (more than half) of that category's batches in that iteration: the selector kept choosing a judge
  that now teaches the wrong answer.
- Without gold labels: the chosen RM's mean score of the responses it preferred (`selections.jsonl`
  `chosen_score`) beside the task metric, per iteration (`chosen_scores`). A score that keeps rising while
  the metric does not is the policy learning the judge rather than the task.

The plots are in `laser.report.monitor_plots`; docs/monitoring.md says how to read them.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from typing import Any

from laser.errors import LaserConfigError
from laser.report.counterfactuals import GOLD, latest_per_step
from laser.report.jobs import Job, majority_category

log = logging.getLogger("laser.report")

DEFAULT_THRESHOLD = 0.5  # chance: below it the judge prefers the wrong answer more often than the right one
MOST = 0.5  # "kept choosing it": more than this share of the category's batches in the iteration
INVERTED = "gold_pair_inverted"
DECISIVE, ALL_PAIRS = "pairs gold can order", "all pairs (older counterfactuals without gold_pair_inverted)"

Cells = dict[tuple[int, str], dict[str, Any]]  # {(iteration, category): {"steps", "chosen": {rm: n}, "arms": ...}}


def check_threshold(threshold: float) -> float:
    """The hacking threshold, a live accuracy in [0, 1]."""
    if not 0.0 <= threshold <= 1.0:
        raise LaserConfigError(f"hacking threshold must be a live accuracy in [0, 1], got {threshold}")
    return threshold


def live_measure(jobs: list[Job]) -> str:
    """DECISIVE when every RM of every counterfactual line carries `gold_pair_inverted`, else ALL_PAIRS."""
    arms = [arm for job in jobs for line in job.counterfactuals for arm in (line.get("arms") or {}).values()]
    return DECISIVE if all(INVERTED in arm for arm in arms) else ALL_PAIRS


def live_accuracy(lines: list[dict[str, Any]], measure: str = DECISIVE) -> Cells:
    """One job's counterfactuals per (iteration, majority category): steps, single-RM choices per RM, and
    per RM its live accuracy (None when no pair could be ordered) with the pairs it rests on."""
    cells: Cells = defaultdict(lambda: {"steps": 0, "chosen": defaultdict(int),
                                        "arms": defaultdict(lambda: {"right": 0.0, "wrong": 0.0, "pairs": 0})})
    for line in latest_per_step(lines):
        cell = cells[(int(line.get("iteration", 0)), majority_category(line.get("categories") or {}))]
        cell["steps"] += 1
        chosen = line.get("chosen") or []
        if len(chosen) == 1:  # an ensemble chooses no one RM
            cell["chosen"][chosen[0]] += 1
        for rm, arm in (line.get("arms") or {}).items():
            totals = cell["arms"][rm]
            if arm.get("pairs") and arm.get(GOLD) is not None:
                totals["right"] += arm[GOLD] * arm["pairs"]
                totals["wrong"] += (arm.get(INVERTED) or 0.0) * arm["pairs"]
                totals["pairs"] += arm["pairs"]
    for cell in cells.values():
        for totals in cell["arms"].values():
            counted = totals["right"] + totals["wrong"] if measure == DECISIVE else totals["pairs"]
            totals["accuracy"] = totals["right"] / counted if counted > 1e-9 else None
            totals["counted"] = round(counted)
    return dict(sorted(cells.items()))


def flagged_rms(accuracy: dict[str, float | None], chosen: dict[str, int], steps: int, threshold: float) -> list[str]:
    """The RMs to flag in one (iteration, category) of one job: chosen for more than MOST of its `steps`
    batches while their live accuracy there was below `threshold` (an RM without one is not flagged)."""
    return sorted(rm for rm, n in chosen.items() if steps and n / steps > MOST
                  and accuracy.get(rm) is not None and accuracy[rm] < threshold)


def hacking_flags(jobs: list[Job], threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any] | None:
    """{"threshold", "measure", "flags": [one row per flagged (job, iteration, category, RM)]} over the
    jobs with counterfactuals (None when none has them)."""
    measured = [job for job in jobs if job.counterfactuals]
    if not measured:
        return None
    measure, flags = live_measure(measured), []
    for job in measured:
        for (iteration, category), cell in live_accuracy(job.counterfactuals, measure).items():
            arms = cell["arms"]
            for rm in flagged_rms({rm: a["accuracy"] for rm, a in arms.items()}, cell["chosen"], cell["steps"], threshold):
                flags.append({"task": job.task, "method": job.method, "seed": job.seed, "job": str(job.path),
                              "iteration": iteration, "category": category, "rm": rm,
                              "live_accuracy": arms[rm]["accuracy"], "pairs": arms[rm]["counted"],
                              "chosen": cell["chosen"][rm], "steps": cell["steps"]})
    flags.sort(key=lambda f: (f["task"], f["method"], f["seed"], f["iteration"], f["category"], f["rm"], f["job"]))
    return {"threshold": threshold, "measure": measure, "flags": flags}


def chosen_scores(job: Job) -> dict[str, dict[int, float]]:
    """{RM: {iteration: mean `chosen_score` of the decisions that chose it}} (single-RM decisions only)."""
    values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for line in job.selections:
        if isinstance(line.get("arm_name"), str) and line.get("chosen_score") is not None:
            values[line["arm_name"]][int(line["iteration"])].append(float(line["chosen_score"]))
    return {rm: {i: statistics.fmean(v) for i, v in sorted(by_iteration.items())}
            for rm, by_iteration in sorted(values.items())}


# ---- report.md and the log ----------------------------------------------------------------------------


def _flag_text(flag: dict[str, Any]) -> str:
    return (f"{flag['task']} {flag['method']} seed {flag['seed']}, iteration {flag['iteration']}, category "
            f"{flag['category']}: {flag['rm']} took {flag['chosen']} of {flag['steps']} batches with live accuracy "
            f"{flag['live_accuracy']:.2f}")


def hacking_monitor(jobs: list[Job], threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any] | None:
    """`hacking_flags` under a checked threshold, each flag also a warning in the log."""
    monitor = hacking_flags(jobs, check_threshold(threshold))
    for flag in (monitor or {}).get("flags", []):
        log.warning("reward-hacking monitor: %s < %g (%s)", _flag_text(flag), threshold, flag["job"])
    return monitor


def monitor_section(monitor: dict[str, Any] | None, jobs: list[Job]) -> list[str]:
    """report.md's section (none when the sweep has neither counterfactuals nor chosen scores)."""
    has_scores = any(chosen_scores(job) for job in jobs)
    if monitor is None and not has_scores:
        return []
    lines = ["", "## Reward-hacking monitor", "", "Is each judge still right about what the policy now writes? "
             "How to read it: docs/monitoring.md."]
    if monitor is not None:
        t = monitor["threshold"]
        lines += ["", f"`live_accuracy.png`: per job, iteration and category, each RM's live accuracy on the policy's own "
                  f"samples (counterfactuals), measured on {monitor['measure']}. A flag: an RM whose live accuracy "
                  f"fell below {t:g} (`--hacking-threshold`; 0.5 is chance, below it the judge prefers wrong answers "
                  "to right ones) while it took more than half of that category's batches in that iteration.", ""]
        rows = [f"| {f['task']} | {f['method']} | {f['seed']} | {f['iteration']} | {f['category']} | {f['rm']} | "
                f"{f['live_accuracy']:.2f} | {f['pairs']} | {f['chosen']} / {f['steps']} |" for f in monitor["flags"]]
        lines += ([f"**{len(rows)} flag(s): a chosen judge below {t:g}.**", "",
                   "| task | method | seed | iteration | category | RM | live accuracy | pairs | batches chosen |",
                   "|" + " --- |" * 9] + rows) if rows else [f"No chosen judge fell below {t:g}."]
    if has_scores:
        lines += ["", "`chosen_score.png`: per RM, its mean score of the responses it preferred when chosen (no gold "
                  "needed), beside the task metric, per iteration and method. A score that rises while the metric "
                  "does not is the policy learning the judge rather than the task."]
    return lines
