"""The plots of the counterfactual diagnostics (see `laser.report.counterfactuals`), only for sweeps whose
runs had `laser.counterfactuals=true`.

- `reward_vs_gold_<reward>.png`, one per selector reward in the sweep: one panel per (task, majority
  category); for each RM, its mean gold pair accuracy (solid) beside the mean normalised reward the bandit
  would have learnt from it (hatched). A reward that ranks RMs like gold does has bars of the same shape;
  each panel's title gives Kendall's tau-b and the per-step agreement rate.
- `counterfactual_regret.png`: the true cumulative regret in gold pair accuracy of the decisions taken,
  mean ± std over jobs per method; one panel per task.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from laser.report.counterfactuals import GOLD, Curves, regret_band
from laser.report.jobs import Job
from laser.report.plots import arm_colours, arm_names, panels, save_png

Views = dict[str, dict[str, dict[str, dict[str, Any]]]]  # reward_vs_gold's {task: {reward: {category: view}}}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _tau(value: float | None) -> str:
    return "–" if value is None else f"{value:+.2f}"


def _bars(ax: Axes, view: dict[str, Any], arms: list[str], colours: dict[str, tuple]) -> None:
    """Per RM: gold accuracy (solid) and mean normalised reward (hatched), side by side."""
    shown = [a for a in arms if a in view["arms"]]
    for i, arm in enumerate(shown):
        means = view["arms"][arm]
        for offset, key, style in [(-0.2, GOLD, {}), (0.2, "reward_normalised", {"hatch": "//", "alpha": 0.55})]:
            value = means[key]
            if value is not None:
                ax.bar(i + offset, value, 0.38, color=colours[arm], edgecolor="black", linewidth=0.5, **style)
    ax.set_xticks(np.arange(len(shown)), shown, rotation=20, ha="right")
    ax.set(ylim=(0, 1.05), ylabel="mean over steps")


def plot_reward_vs_gold(views: Views, reward: str, arms: list[str], path: Path) -> Path:
    """One panel per (task, category) of `reward`: each RM's gold accuracy beside its mean reward."""
    cells = [(task, category, by_reward[reward][category]) for task, by_reward in views.items()
             if reward in by_reward for category in by_reward[reward]]
    several_tasks = len({task for task, _, _ in cells}) > 1
    colours = arm_colours(arms)
    fig, axes = panels(len(cells), width=max(4.0, 1.0 * len(arms) + 1.5))
    for ax, (task, category, view) in zip(axes, cells, strict=True):
        _bars(ax, view, arms, colours)
        name = f"{task} / {category}" if several_tasks else f"category: {category}"
        ax.set_title(f"{name} ({view['steps']} steps)\nKendall tau {_tau(view['kendall_tau']['reward_normalised'])},"
                     f" best-RM agreement {_percent(view['agreement']['reward_normalised']['rate'])}", fontsize="medium")
    fig.legend(handles=[Patch(facecolor="lightgrey", edgecolor="black", label="mean gold pair accuracy"),
                        Patch(facecolor="lightgrey", edgecolor="black", hatch="//", label="mean normalised reward")],
               loc="outside lower center", ncols=2)
    fig.suptitle(f"What the '{reward}' reward sees: each RM's reward against its gold pair accuracy\n"
                 "(counterfactuals: every RM measured at every step)")
    return save_png(fig, path)


def plot_counterfactual_regret(curves: Curves, path: Path) -> Path:
    """One panel per task: cumulative regret in gold pair accuracy, mean ± std over jobs, per method."""
    fig, axes = panels(len(curves))
    for ax, (task, by_method) in zip(axes, curves.items(), strict=True):
        colours = colormaps["tab20" if len(by_method) > 10 else "tab10"].colors  # one colour per method
        for (method, runs), colour in zip(by_method.items(), colours, strict=False):
            mean, std = (np.array(v) for v in regret_band(runs))
            x = np.arange(len(mean))
            (line,) = ax.plot(x, mean, label=f"{method} (n={len(runs)})", color=colour)
            std = np.nan_to_num(std)  # one job: no band
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set(title=f"task: {task}", xlabel="training step", ylabel="cumulative regret (gold pair accuracy)")
        ax.legend(title="method (jobs)", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle("Cumulative regret vs the best RM of each step, mean ± std over jobs\n"
                 "(every RM measured at every step: a true regret, not an estimate)")
    return save_png(fig, path)


def reward_file(reward: str) -> str:
    """`reward_vs_gold_<reward>.png`, with anything but letters, digits, `.`, `-` and `_` replaced."""
    return "reward_vs_gold_" + re.sub(r"[^\w.-]", "_", reward) + ".png"


def write_counterfactual_plots(jobs: list[Job], out_dir: Path, views: Views, curves: Curves) -> list[Path]:
    """The counterfactual plots, if the sweep has counterfactuals (none otherwise)."""
    if not views:
        return []
    rewards = sorted({reward for by_reward in views.values() for reward in by_reward})
    seen = [rm for by_reward in views.values() for by_category in by_reward.values()
            for view in by_category.values() for rm in view["arms"]]
    arms = list(dict.fromkeys(arm_names(jobs) + seen))  # pool order, as in the other plots
    written = [plot_reward_vs_gold(views, reward, arms, out_dir / reward_file(reward)) for reward in rewards]
    if curves:
        written.append(plot_counterfactual_regret(curves, out_dir / "counterfactual_regret.png"))
    return written
