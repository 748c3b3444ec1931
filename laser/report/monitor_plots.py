"""The reward-hacking monitor's plots (see `laser.report.monitor`; docs/monitoring.md says how to read them).

- `live_accuracy.png` (sweeps with counterfactuals): one panel per (task,) method and majority category;
  per RM, its live accuracy on the policy's own samples against iteration, mean over the method's jobs.
  The dashed line is the hacking threshold; a red cross is one job's flagged RM (chosen for most of the
  category's batches while below it).
- `chosen_score.png` (runs that wrote `chosen_score`, no gold needed): per task, one panel per RM with
  each method's mean score of the responses that RM preferred when chosen, and a last panel with the task
  metric, all against iteration.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.lines import Line2D

from laser.report.jobs import Job
from laser.report.monitor import chosen_scores, live_accuracy
from laser.report.plots import arm_colours, arm_names, panels, save_png


def _means(values: dict[int, list[float]]) -> tuple[list[int], list[float]]:
    x = sorted(values)
    return x, [statistics.fmean(values[i]) for i in x]


def _iteration_axis(ax, iterations: list[dict[int, Any]], label: str = "iteration") -> None:
    """A tick per iteration with data (keys of `iterations`), however few points a panel has."""
    ticks = sorted({int(i) for values in iterations for i in values})
    ax.set_xticks(ticks)
    ax.set_xlim(min(ticks, default=0) - 0.3, max(ticks, default=0) + 0.3)
    ax.set_xlabel(label)


def plot_live_accuracy(jobs: list[Job], monitor: dict[str, Any], path: Path) -> Path:
    """One panel per (task, method, category): each RM's live accuracy by iteration, the threshold, the flags."""
    per_panel: dict[tuple[str, str, str], dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for job in (j for j in jobs if j.counterfactuals):
        for (iteration, category), cell in live_accuracy(job.counterfactuals, monitor["measure"]).items():
            for rm, arm in cell["arms"].items():
                if arm["accuracy"] is not None:
                    per_panel[(job.task, job.method, category)][rm][iteration].append(arm["accuracy"])
    seen = {rm for by_rm in per_panel.values() for rm in by_rm}
    arms = [a for a in dict.fromkeys(arm_names(jobs) + sorted(seen)) if a in seen]  # pool order
    colours = arm_colours(arms)
    several_tasks = len({task for task, _, _ in per_panel}) > 1
    fig, axes = panels(len(per_panel))
    for ax, key in zip(axes, sorted(per_panel), strict=True):
        task, method, category = key
        for rm in (a for a in arms if a in per_panel[key]):
            ax.plot(*_means(per_panel[key][rm]), marker="o", color=colours[rm])
        flags = [f for f in monitor["flags"] if (f["task"], f["method"], f["category"]) == key]
        ax.scatter([f["iteration"] for f in flags], [f["live_accuracy"] for f in flags], marker="x", s=90,
                   color="red", linewidths=2, zorder=5)
        ax.axhline(monitor["threshold"], color="grey", linestyle="--", linewidth=1)
        ax.set(title=f"{task} / {method} / {category}" if several_tasks else f"{method} / category: {category}",
               ylabel="live accuracy", ylim=(-0.03, 1.03))
        _iteration_axis(ax, list(per_panel[key].values()))
    handles = [Line2D([], [], color=colours[a], marker="o", label=a) for a in arms]
    handles += [Line2D([], [], color="grey", linestyle="--", label=f"threshold {monitor['threshold']:g}"),
                Line2D([], [], color="red", marker="x", linestyle="", markersize=9,
                       label="flagged: chosen for most batches while below")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))
    fig.suptitle("Is each judge still right about what the policy now writes?\n"
                 f"Live accuracy on the policy's own samples ({monitor['measure']}), mean over jobs")
    return save_png(fig, path)


def plot_chosen_score(jobs: list[Job], path: Path) -> Path | None:
    """Per task: one panel per RM (each method's mean chosen score by iteration) and one for the task metric."""
    scores: dict[str, dict[str, dict[str, dict[int, list[float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))  # task -> rm -> method -> iteration
    for job in jobs:
        for rm, by_iteration in chosen_scores(job).items():
            for iteration, value in by_iteration.items():
                scores[job.task][rm][job.method][iteration].append(value)
    if not scores:
        return None
    cells = [(task, rm) for task in sorted(scores) for rm in [*sorted(scores[task]), None]]  # None: the metric
    methods = sorted({m for by_rm in scores.values() for by_method in by_rm.values() for m in by_method})
    colours = arm_colours(methods)
    fig, axes = panels(len(cells))
    for ax, (task, rm) in zip(axes, cells, strict=True):
        if rm is None:
            _metric_panel(ax, [j for j in jobs if j.task == task and j.method in methods], colours)
            continue
        for method, by_iteration in sorted(scores[task][rm].items()):
            ax.plot(*_means(by_iteration), marker="o", color=colours[method])
        ax.set(title=f"{task}: {rm} when chosen", ylabel="score of its preferred responses")
        _iteration_axis(ax, list(scores[task][rm].values()))
    fig.legend(handles=[Line2D([], [], color=colours[m], marker="o", label=m) for m in methods], title="method",
               loc="outside lower center", ncols=min(len(methods), 6))
    fig.suptitle("The chosen judge's score of what it preferred vs the task metric (no gold labels needed)\n"
                 "a score rising while the metric does not: the policy is learning the judge, not the task")
    return save_png(fig, path)


def _metric_panel(ax, jobs: list[Job], colours: dict[str, tuple]) -> None:
    """The task metric by iteration (0 = before preference training), mean over each method's jobs."""
    plotted = []
    for method in sorted({j.method for j in jobs}):
        values: dict[int, list[float]] = defaultdict(list)
        for job in (j for j in jobs if j.method == method):
            for record in job.results.get("iterations", []):
                value = job.accuracy(int(record["iteration"]))
                if value is not None:
                    values[int(record["iteration"])].append(value)
        if values:
            ax.plot(*_means(values), marker="s", linestyle="--", color=colours[method])
            plotted.append(values)
    metric = jobs[0].metric if jobs else "metric"
    ax.set(title=f"{jobs[0].task if jobs else ''}: {metric}", ylabel=metric)
    _iteration_axis(ax, plotted, "iteration (0 = before)")


def write_monitor_plots(jobs: list[Job], out_dir: Path, monitor: dict[str, Any] | None) -> list[Path]:
    """The monitor's plots the sweep has data for."""
    written = [plot_live_accuracy(jobs, monitor, out_dir / "live_accuracy.png") if monitor else None,
               plot_chosen_score(jobs, out_dir / "chosen_score.png")]
    return [path for path in written if path is not None]
