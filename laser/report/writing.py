"""The files of a sweep report: `report.md`, `report.csv`, `report.json` and the plots, from the table
(`laser.report.tables`), the pseudo-regret (`laser.report.regret`), for runs with
`laser.counterfactuals=true` what the bandit's reward sees (`laser.report.counterfactuals`), and for
sweeps that wrote test responses (instruction following) LASeR's head-to-head win rates against each
baseline (`laser.report.head_to_head`)."""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from laser.report.counterfactual_plots import write_counterfactual_plots
from laser.report.counterfactuals import REWARDS, counterfactual_regret, final_regret, reward_vs_gold
from laser.report.environments import environment_lines, sweep_environments
from laser.report.guard import guard_section, guard_summary
from laser.report.head_to_head import configured_judge, evaluation_outputs, head_to_head
from laser.report.jobs import Job, load_sweep
from laser.report.monitor import DEFAULT_THRESHOLD, hacking_monitor, monitor_section
from laser.report.monitor_plots import write_monitor_plots
from laser.report.paired import log_paired, method_names, paired_section, paired_table, write_paired_csv
from laser.report.plots import write_plots
from laser.report.regret import regret_curves, regret_summary
from laser.report.shares import last_iteration_shares, rm_calls_by_rm
from laser.report.stats import Summary, is_nan
from laser.report.tables import build_table, passes_by_task, task_heading
from laser.tasks.win_rate import Judge


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or is_nan(value) else f"{value:.{digits}f}"


def _mean_std(s: Summary, digits: int = 3) -> str:
    return _fmt(s.mean, digits) if s.n < 2 else f"{_fmt(s.mean, digits)} ± {_fmt(s.std, digits)}"


def _interval(s: Summary, digits: int = 3) -> str:
    return "–" if s.n < 2 else f"[{_fmt(s.ci_low, digits)}, {_fmt(s.ci_high, digits)}]"


def _summary_cell(s: Summary) -> str:
    """`mean ± std [CI] (n=…)`, or just `mean (n=1)` for one seed."""
    return f"{_mean_std(s)} (n={s.n})" if s.n < 2 else f"{_mean_std(s)} {_interval(s)} (n={s.n})"


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _accuracy_section(table: dict[str, dict[str, dict[str, Any]]],
                      passes: dict[str, tuple[float, float] | None]) -> list[str]:
    tasks = list(table)
    rows_order = list(dict.fromkeys(row for task in tasks for row in table[task]))
    rows = [[row] + [_summary_cell(table[t][row]["accuracy"]) if row in table[t] else "–" for t in tasks]
            for row in rows_order]
    lines = ["## Final test accuracy", "",
             "Mean ± std over seeds, [95% Student-t confidence interval], n = seeds. Jobs sharing method,",
             "task and seed are averaged first. `before preference training` is the same jobs at iteration 0:",
             "`(SFT: N steps)` after N supervised warm-start steps on the task's training targets, `(no warm",
             "start)` the policy as loaded (a base model is not the paper's SFT baseline). Each task names",
             "its passes over the training set per iteration (prompts trained per iteration / training prompts).",
             ""] + _markdown_table(["method"] + [task_heading(t, passes.get(t)) for t in tasks], rows)
    for task, cells in table.items():
        categories = list(next(iter(cells.values()))["categories"])
        header = ["method", "accuracy", "95% CI", "seeds"] + categories + ["RM calls / run", "wall s / run"]
        rows = [[row, _mean_std(c["accuracy"]), _interval(c["accuracy"]), str(c["accuracy"].n)]
                + [_mean_std(c["categories"][k]) for k in categories]
                + [_fmt(c.get("rm_calls_per_run"), 0), _fmt(c.get("wall_seconds_per_run"), 1)]
                for row, c in cells.items()]
        lines += ["", f"### {task_heading(task, passes.get(task))}", ""] + _markdown_table(header, rows)
    return lines


def _summary_table(summary: dict[str, dict[str, Summary]], what: str, count: str) -> list[str]:
    """One row per (task, method): mean ± std, the 95% CI and how many runs, to two decimals."""
    rows = [[task, method, _mean_std(s, 2), _interval(s, 2), str(s.n)]
            for task, by_method in summary.items() for method, s in by_method.items()]
    return _markdown_table(["task", "method", what, "95% CI", count], rows)


def _regret_section(means: dict[str, dict[str, dict[str, float]]], summary: dict[str, dict[str, Summary]]) -> list[str]:
    lines = ["", "## Pseudo-regret", "",
             "A pseudo-regret estimated from the sweep's own decisions: per task and category, each RM's mean",
             "gold pair accuracy (fraction of a decision's pairs whose chosen response is right and rejected",
             "wrong) over all decisions in the sweep that used it alone; the oracle arm is the best RM. A",
             "decision adds the oracle's mean minus its RM's mean for its majority category. Rarely chosen",
             "RMs have noisy means. Final cumulative pseudo-regret per run, mean ± std over seeds:", ""]
    lines += _summary_table(summary, "pseudo-regret", "seeds") + [""]
    rows = [[task, category, max(arms, key=arms.get), ", ".join(f"{a} {v:.2f}" for a, v in arms.items())]
            for task, by_category in means.items() for category, arms in by_category.items()]
    return lines + _markdown_table(["task", "category", "oracle RM", "mean gold pair accuracy"], rows)


def reward_vs_gold_tables(views: dict[str, dict[str, dict[str, dict[str, Any]]]]) -> list[str]:
    """Markdown, per task and selector reward: each RM's means per category, then per category the
    rank agreement (Kendall's tau-b) and the per-step agreement rate, for the normalised and raw reward."""
    lines: list[str] = []
    for task, by_reward in views.items():
        for reward, by_category in by_reward.items():
            rows = [[category, rm] + [_fmt(m[key]) for key in ("gold_pair_accuracy", *REWARDS)]
                    for category, view in by_category.items() for rm, m in view["arms"].items()]
            lines += ["", f"### {task}: reward `{reward}`", ""] + _markdown_table(
                ["category", "RM", "mean gold pair accuracy", "mean normalised reward", "mean raw reward"], rows)
            rows = [[category, str(view["steps"])] + [_fmt(view["kendall_tau"][key], 2) for key in REWARDS]
                    + [f"{_fmt(view['agreement'][key]['rate'], 2)} ({view['agreement'][key]['steps']} steps)"
                       for key in REWARDS] for category, view in by_category.items()]
            lines += [""] + _markdown_table(["category", "steps", "Kendall tau (normalised)", "Kendall tau (raw)",
                                             "agreement (normalised)", "agreement (raw)"], rows)
    return lines


def _counterfactual_section(views: dict[str, Any], final: dict[str, dict[str, Summary]]) -> list[str]:
    lines = ["", "## What the bandit's reward sees (counterfactuals)", "",
             "Runs with `laser.counterfactuals=true` measure every RM at every step on the same samples: the gold",
             "pair accuracy of its pairs and the selector reward it would have earned had the bandit chosen it.",
             "Per task, selector reward and majority category of a step, over all steps of all jobs: each RM's",
             "means; Kendall's tau-b between the RMs' ranking by mean reward and by mean gold accuracy (1: same",
             "order, -1: reversed); the agreement rate, the fraction of steps where the reward's best RM is a",
             "gold-best RM (ties at the reward's top count fractionally; steps with a missing value or where every",
             "RM ties on gold are left out)."]
    lines += reward_vs_gold_tables(views)
    lines += ["", "### Regret of the decisions taken", "",
              "A true regret, not an estimate (unlike the pseudo-regret): at each step, the best RM's gold pair",
              "accuracy minus the chosen RM's, both measured at that step; summed over steps (ensemble decisions",
              "and steps without the chosen RM's gold accuracy add nothing). Final cumulative regret per job,",
              "mean ± std over jobs:", ""]
    return lines + _summary_table(final, "cumulative regret", "jobs")


def _rm_calls_section(calls: dict[str, Any]) -> list[str]:
    lines = ["", "## RM calls by RM", "", "Responses each RM scored per run (`results.json` `rm_calls`), mean over the method's runs.", ""]
    rows = [[task, method, ", ".join(f"{rm} {n:.0f}" for rm, n in sorted(by_rm.items(), key=lambda kv: -kv[1]))]
            for task, by_method in calls.items() for method, by_rm in by_method.items() if by_rm]
    return lines + _markdown_table(["task", "method", "responses scored per run, by RM"], rows) if rows else []


def _shares_section(shares: dict[str, Any]) -> list[str]:
    lines = ["", "## Where the bandits end up: RM shares in the last iteration", "",
             "Per method and (majority) category of a batch, each RM's share of the last iteration's decisions,",
             "mean over the method's runs (the lowest run's share in brackets: one locked-in seed shows there).", ""]
    rows = [[task, method, category, ", ".join(f"{rm} {v['mean']:.2f} ({v['min']:.2f})" for rm, v in
                                              sorted(rms.items(), key=lambda kv: -kv[1]["mean"]))]
            for task, by_method in shares.items() for method, by_category in by_method.items()
            for category, rms in by_category.items()]
    return lines + _markdown_table(["task", "method", "category", "RM share, mean (lowest run)"], rows)


def _head_to_head_section(result: dict[str, Any]) -> list[str]:
    lines = ["", "## Head-to-head win rates", ""]
    if result["judge"] is None:
        return lines + ["The jobs wrote their test responses (`model_outputs/`) but evaluated with no judge, so no",
                        "head-to-head was judged: rerun with `python -m laser.report <sweep> --judge length|rm:<path>|lm:<path>`."]
    lines += [f"Judge: `{result['judge']}`. Each LASeR method's final test responses against each baseline's on the",
              "same prompts and seed (and against its own responses before preference training), judged in both",
              "orders (LASeR first, then the baseline first; the verdicts are averaged, which cancels position",
              "bias). A win counts 1, a tie 0.5 (so does a verdict that flips with the order), a loss 0. Win rate",
              "of LASeR: mean ± std over seeds, [95% t-interval]; wins / ties / losses over all judged prompts.", ""]
    rows = [[task, laser, opponent, _mean_std(c["win_rate"]), _interval(c["win_rate"]), str(c["win_rate"].n),
             str(c["prompts"]), f"{c['wins']} / {c['ties']} / {c['losses']}"]
            for task, by_laser in result["tasks"].items() for laser, by_opponent in by_laser.items()
            for opponent, c in by_opponent.items()]
    return lines + _markdown_table(["task", "LASeR", "vs", "win rate", "95% CI", "seeds", "prompts",
                                    "wins / ties / losses"], rows)


def render_markdown(sweep_dir: Path, jobs: list[Job], skipped: list[Path], table: dict[str, Any],
                    means: dict[str, Any], regret: dict[str, dict[str, Summary]],
                    counterfactuals: dict[str, Any] | None = None, shares: dict[str, Any] | None = None,
                    wins: dict[str, Any] | None = None, paired: list[str] | None = None,
                    monitor: list[str] | None = None) -> str:
    """report.md: the accuracy tables, the paired differences against a baseline (`paired`: its lines),
    the pseudo-regret, the counterfactuals, the reward-hacking monitor and guard (`monitor`: their lines) and the
    head-to-head win rates (`wins`; each if any), and the skipped jobs."""
    lines = ["# LASeR sweep report", "",
             f"Sweep `{sweep_dir}`: {len(jobs)} complete jobs, {len(skipped)} skipped.", ""]
    lines += _accuracy_section(table, passes_by_task(jobs)) + list(paired or [])
    if shares:
        lines += _shares_section(shares)
    lines += _rm_calls_section(rm_calls_by_rm(jobs))
    if regret:
        lines += _regret_section(means, regret)
    if counterfactuals:
        lines += _counterfactual_section(counterfactuals["reward_vs_gold"], counterfactuals["final_regret"])
    lines += list(monitor or [])
    if wins:
        lines += _head_to_head_section(wins)
    lines += environment_lines(sweep_environments(jobs)) if jobs else []
    if skipped:
        lines += ["", "## Skipped jobs (incomplete: `complete` is false)", ""] + [f"- `{p}`" for p in skipped]
    return "\n".join(lines) + "\n"


def write_csv(table: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """report.csv: one row per method, a column group per task (`<task>/accuracy_mean`, ...)."""
    rows: dict[str, dict[str, Any]] = defaultdict(dict)
    for task, cells in table.items():
        for row, cell in cells.items():
            out = rows[row]
            for stat, value in asdict(cell["accuracy"]).items():
                out[f"{task}/accuracy_{stat}"] = value
            for category, s in cell["categories"].items():
                out[f"{task}/accuracy/{category}_mean"] = s.mean
                out[f"{task}/accuracy/{category}_std"] = s.std
            out[f"{task}/rm_calls_per_run"] = cell.get("rm_calls_per_run")
            out[f"{task}/wall_seconds_per_run"] = cell.get("wall_seconds_per_run")
    columns = list(dict.fromkeys(k for out in rows.values() for k in out))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["method"] + columns)
        writer.writeheader()
        for row, out in rows.items():
            writer.writerow({"method": row, **{k: "" if v is None or is_nan(v) else v for k, v in out.items()}})


def _json_ready(value: Any) -> Any:
    """Summaries (and the paired comparisons) as dicts and NaN as null, so report.json is strict JSON."""
    if is_dataclass(value) and not isinstance(value, type):
        return _json_ready(asdict(value))
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return None if is_nan(value) else value


def sweep_head_to_head(jobs: list[Job], judge: Judge | None = None,
                       laser_methods: list[str] | None = None) -> dict[str, Any] | None:
    """The head-to-head win rates of a sweep whose jobs wrote test responses (None for one that wrote
    none): under `judge`, else the judge the jobs evaluated with; `{"judge": None, "tasks": {}}` when
    there is neither."""
    if not any(evaluation_outputs(job) is not None for job in jobs):
        return None
    judge = judge or configured_judge(jobs)
    return head_to_head(jobs, judge, laser_methods) if judge else {"judge": None, "both_orders": True, "tasks": {}}


def write_report(sweep_dir: Path | str, out_dir: Path | str | None = None, judge: Judge | None = None,
                 laser_methods: list[str] | None = None, baseline: str | None = None,
                 hacking_threshold: float = DEFAULT_THRESHOLD) -> list[Path]:
    """Read the sweep, write report.md/.csv/.json (and report_paired.csv) and the plots into `out_dir`
    (default: the sweep folder); returns the files written. `judge` and `laser_methods` are for the
    head-to-head win rates (`sweep_head_to_head`), `baseline` for the paired differences (`paired_table`:
    None is the score ensemble, when the sweep ran it), `hacking_threshold` for the reward-hacking monitor
    (`laser.report.monitor`)."""
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir
    jobs, skipped = load_sweep(sweep_dir)
    if not jobs:
        raise FileNotFoundError(f"no complete job (results.json with complete=true) under {sweep_dir}")
    paired = paired_table(jobs, baseline)  # first: a baseline the sweep did not run stops here
    log_paired(paired, method_names(jobs))
    monitor = hacking_monitor(jobs, hacking_threshold)  # its flags go to the log too
    guards = guard_summary(jobs)  # guard=dev_rollback jobs: what the guard undid
    out.mkdir(parents=True, exist_ok=True)
    environments = sweep_environments(jobs)
    if len(environments) > 1:
        logging.getLogger("laser.report").warning(
            "%s: the jobs ran under %d environments (report.md, section Environments); compare methods within one",
            sweep_dir, len(environments))
    table = build_table(jobs)
    means, curves = regret_curves(jobs)
    regret = regret_summary(curves)
    views, true_curves = reward_vs_gold(jobs), counterfactual_regret(jobs)
    counterfactuals = {"reward_vs_gold": views, "final_regret": final_regret(true_curves)} if views else None
    files = [out / "report.md", out / "report.csv", out / "report.json"]
    shares, wins = last_iteration_shares(jobs), sweep_head_to_head(jobs, judge, laser_methods)
    files[0].write_text(render_markdown(sweep_dir, jobs, skipped, table, means, regret, counterfactuals, shares,
                                        wins, paired_section(paired, method_names(jobs)),
                                        monitor_section(monitor, jobs) + guard_section(guards)))
    write_csv(table, files[1])
    payload = {"sweep": str(sweep_dir), "jobs": [str(j.path) for j in jobs], "skipped": [str(p) for p in skipped],
               "table": table, "passes_per_iteration": passes_by_task(jobs),
               "pseudo_regret": {"arm_means": means, "final": regret}, "last_iteration_shares": shares,
               "rm_calls_by_rm": rm_calls_by_rm(jobs), "environments": environments}
    if counterfactuals:  # sweeps without them keep report.json as it was
        payload["counterfactuals"] = counterfactuals
    if wins:  # likewise: only sweeps that wrote test responses
        payload["head_to_head"] = wins
    if monitor:  # sweeps with counterfactuals
        payload["hacking_monitor"] = monitor
    if guards:
        payload["guard"] = guards
    if paired:
        payload["paired"] = paired
        write_paired_csv(paired, out / "report_paired.csv")
        files.append(out / "report_paired.csv")
    files[2].write_text(json.dumps(_json_ready(payload), indent=2) + "\n")
    return (files + write_plots(jobs, out, curves) + write_counterfactual_plots(jobs, out, views, true_curves)
            + write_monitor_plots(jobs, out, monitor))
