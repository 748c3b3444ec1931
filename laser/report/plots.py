"""The plots of a sweep report (see `laser.report.regret`), as PNG files.

Figures are built with `matplotlib.figure.Figure` and saved through the Agg canvas, so nothing
touches pyplot's global state or needs a display (a notebook importing this keeps its own backend).

- `selection_share.png`: for each method that chooses among RMs, the share of each RM among the
  decisions of a rolling window of steps, averaged over runs (seeds); one panel per method.
- `selection_share_by_category.png`: per (majority) category of a decision, each RM's share of the
  decisions of each such method, pooled over seeds (grouped bars).
- `accuracy_by_iteration.png`: test accuracy against iteration (0 = before preference training),
  mean ± std over seeds per method; one panel per task.
- `regret.png`: cumulative pseudo-regret against the oracle arm (see `laser.report.regret`), mean ± std
  over seeds per method; one panel per task. Only when decisions carry `gold_pair_accuracy`.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from laser.report.jobs import Job, majority_category
from laser.report.regret import Curves
from laser.report.stats import summarise
from laser.report.tables import per_seed_means

_DPI = 120


def panels(count: int, width: float = 5.0, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    """A figure with `count` panels, at most 3 a row (unused grid cells hidden)."""
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    # A lone panel gets a wider figure so that the figure title fits.
    fig = Figure(figsize=(max(width * cols, 7.0), height * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def save_png(fig: Figure, path: Path) -> Path:
    """Write `fig` (every plot of the report has the same resolution)."""
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")  # legends placed beside a panel stay in the picture
    return path


def arm_names(jobs: list[Job]) -> list[str]:
    """Every single RM of the sweep, in pool order (so an RM has one colour in every plot)."""
    names: dict[str, None] = {}
    for job in jobs:
        names.update(dict.fromkeys(job.results.get("rm_selection_counts", {})))
        names.update(dict.fromkeys(s["arm_name"] for s in job.selections if isinstance(s.get("arm_name"), str)))
    return list(names)


def arm_colours(names: list[str]) -> dict[str, tuple]:
    """A colour per RM, from one palette, so the same list gives the same colours in every plot."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def choosing_methods(jobs: list[Job]) -> list[str]:
    """Methods whose decisions pick more than one distinct single RM; ensembles (a list of RMs per
    decision) and fixed single-RM runs have no selection to show."""
    arms: dict[str, set[str]] = {}
    for job in jobs:
        arms.setdefault(job.method, set()).update(
            s["arm_name"] for s in job.selections if isinstance(s.get("arm_name"), str))
    return sorted(method for method, names in arms.items() if len(names) > 1)


def rolling_shares(selections: list[dict], arms: list[str], window: int) -> np.ndarray:
    """(steps, arms): each RM's share of the decisions in the trailing `window` steps."""
    steps = max(int(s["step"]) for s in selections) + 1
    counts = np.zeros((steps, len(arms)))
    for s in selections:
        if s.get("arm_name") in arms:
            counts[int(s["step"]), arms.index(s["arm_name"])] += 1
    summed = np.cumsum(counts, axis=0)
    summed[window:] -= summed[:-window].copy()  # trailing-window sums
    totals = summed.sum(axis=1, keepdims=True)
    return np.divide(summed, totals, out=np.full_like(summed, np.nan), where=totals > 0)


def plot_selection_share(jobs: list[Job], path: Path, window: int | None = None) -> Path | None:
    """One panel per choosing method: RM share over steps (rolling window, mean over runs)."""
    methods = choosing_methods(jobs)
    if not methods:
        return None
    arms = arm_names(jobs)
    colours = arm_colours(arms)
    fig, axes = panels(len(methods))
    for ax, method in zip(axes, methods, strict=True):
        runs = [j for j in jobs if j.method == method and j.selections]
        steps = min(max(int(s["step"]) for s in j.selections) + 1 for j in runs)
        width = window or max(2, min(50, steps // 8))  # ~8 windows per run: smooth, still shows drift
        shares = np.nanmean([rolling_shares(j.selections, arms, width)[:steps] for j in runs], axis=0)
        for k, arm in enumerate(arms):
            ax.plot(np.arange(steps), shares[:, k], label=arm, color=colours[arm])
        for step in _iteration_starts(runs[0]):
            ax.axvline(step, color="grey", linestyle=":", linewidth=0.8)
        ax.set(title=f"{method} ({len(runs)} run{'s' * (len(runs) > 1)}, window {width} steps)",
               xlabel="training step (dotted: a new iteration)", ylabel="share of decisions", ylim=(-0.02, 1.02))
    arm_legend(fig, arms, colours)
    fig.suptitle("Which reward model each method picks over training (share in a rolling window)")
    return save_png(fig, path)


def arm_legend(fig: Figure, arms: list[str], colours: dict[str, tuple]) -> None:
    """One legend for all panels (the RMs and their colours are the same in each)."""
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=colours[a], label=a) for a in arms], title="reward model",
               loc="outside lower center", ncols=min(len(arms), 6))


def _iteration_starts(job: Job) -> list[int]:
    """The first step of every iteration after the first."""
    first: dict[int, int] = {}
    for s in job.selections:
        first[s["iteration"]] = min(first.get(s["iteration"], s["step"]), s["step"])
    return sorted(step for step in first.values() if step > 0)


def plot_selection_share_by_category(jobs: list[Job], path: Path) -> Path | None:
    """One panel per (task, majority category): grouped bars, one group per choosing method."""
    methods = choosing_methods(jobs)
    if not methods:
        return None
    arms = arm_names(jobs)
    colours = arm_colours(arms)
    counts: dict[tuple[str, str], dict[str, Counter]] = {}
    for job in (j for j in jobs if j.method in methods):
        for s in job.selections:
            if isinstance(s.get("arm_name"), str):
                key = (job.task, majority_category(s.get("categories") or {}))
                counts.setdefault(key, {}).setdefault(job.method, Counter())[s["arm_name"]] += 1
    several_tasks = len({task for task, _ in counts}) > 1
    fig, axes = panels(len(counts), width=max(4.0, 1.2 * len(methods) + 2))
    bar = 0.8 / len(arms)
    for ax, (task, category) in zip(axes, sorted(counts), strict=True):
        by_method = counts[(task, category)]
        for k, arm in enumerate(arms):
            shares = [by_method.get(m, Counter())[arm] / max(1, sum(by_method.get(m, Counter()).values()))
                      for m in methods]
            ax.bar(np.arange(len(methods)) + (k - (len(arms) - 1) / 2) * bar, shares, bar, label=arm,
                   color=colours[arm])
        ax.set_xticks(np.arange(len(methods)), methods)
        title = f"{task} / {category}" if several_tasks else f"category: {category}"
        ax.set(title=title, xlabel="method", ylabel="share of decisions", ylim=(0, 1.05))
    arm_legend(fig, arms, colours)
    fig.suptitle("Reward-model choice by the majority category of a decision (all seeds pooled)")
    return save_png(fig, path)


def plot_accuracy_by_iteration(jobs: list[Job], path: Path) -> Path:
    """One panel per task: mean test accuracy ± std over seeds against iteration, per method."""
    tasks = sorted({j.task for j in jobs})
    fig, axes = panels(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        for method in sorted({j.method for j in jobs if j.task == task}):
            runs = [j for j in jobs if j.task == task and j.method == method]
            last = max(len(j.results.get("iterations", [])) for j in runs)
            summaries = [summarise(per_seed_means(runs, lambda j, i=i: j.accuracy(i)).values()) for i in range(last)]
            x = [i for i, s in enumerate(summaries) if s.n]
            mean = np.array([summaries[i].mean for i in x])
            std = np.nan_to_num(np.array([summaries[i].std for i in x]))  # one seed: no band
            (line,) = ax.plot(x, mean, marker="o", label=f"{method} (n={max(s.n for s in summaries)})")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set(title=f"task: {task}", xlabel="iteration (0 = before preference training)",
               ylabel="test accuracy")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(title="method (seeds)", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Test accuracy by iteration (mean ± std over seeds)")
    return save_png(fig, path)


def plot_regret(curves: Curves, path: Path) -> Path | None:
    """One panel per task: cumulative pseudo-regret over steps, mean ± std over seeds, per method."""
    if not curves:
        return None
    fig, axes = panels(len(curves))
    for ax, (task, by_method) in zip(axes, sorted(curves.items()), strict=True):
        for method, seeds in sorted(by_method.items()):
            per_seed = [c for c in seeds.values() if c]
            steps = min(len(c) for c in per_seed)
            values = np.array([c[:steps] for c in per_seed])
            mean = values.mean(axis=0)
            std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(steps)  # one seed: no band
            (line,) = ax.plot(np.arange(steps), mean, label=f"{method} (n={len(values)})")
            ax.fill_between(np.arange(steps), mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set(title=f"task: {task}", xlabel="training step", ylabel="cumulative pseudo-regret")
        ax.legend(title="method (seeds)", fontsize="small")
    fig.suptitle("Cumulative pseudo-regret vs the per-category oracle RM\n(RM means estimated from this sweep's decisions)")
    return save_png(fig, path)


def write_plots(jobs: list[Job], out_dir: Path, curves: Curves) -> list[Path]:
    """Every plot that the sweep has data for; returns the files written."""
    written = [
        plot_selection_share(jobs, out_dir / "selection_share.png"),
        plot_selection_share_by_category(jobs, out_dir / "selection_share_by_category.png"),
        plot_accuracy_by_iteration(jobs, out_dir / "accuracy_by_iteration.png"),
        plot_regret(curves, out_dir / "regret.png"),
    ]
    return [path for path in written if path is not None]
