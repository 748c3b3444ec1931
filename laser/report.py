"""Summarise a Hydra multirun sweep: a results table (markdown, CSV, JSON) and plots.

    python -m laser.report outputs/multiruns/<time>              # writes next to the jobs
    python -m laser.report outputs/multiruns/<time> --out report/

Reads every job's `results.json` (searched recursively, so `<sweep>/<job>/results.json` and nested
sweeps both work) and `selections.jsonl`. Jobs whose `results.json` says `complete: false` (stopped
or killed runs) are skipped with a warning naming them. Writes:

- `report.md`, `report.csv`, `report.json`: one row per method (`results.json`'s `method`) plus a
  "before preference training" row (each job's iteration-0 test accuracy), named for what the policy
  was (`start_row`): "(SFT: 200 steps)" after a supervised warm start, "(no warm start)" without one,
  e.g. the paper configs' base Llama-3-8B, which is not the paper's SFT policy. One column group per
  task. Final test accuracy is averaged per seed first (jobs that
  share method, task and seed are one sample), then summarised over seeds: mean, sample std, and a
  95% Student-t confidence interval. Also per-category accuracy, RM calls and wall seconds per run.
- the plots of `laser.plots` (selection shares, accuracy by iteration, pseudo-regret).

Pseudo-regret: for each task and category, each RM's mean `gold_pair_accuracy` is estimated from
ALL decisions in the sweep that used that RM alone (whatever the method); the oracle arm is the RM
with the highest mean. A decision's pseudo-regret is the oracle's mean minus the chosen RM's mean
for the decision's (majority) category. It is estimated from the sweep's own decisions, so it is only
as good as those estimates: an RM that was rarely chosen has a noisy mean.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from laser.stats import Summary, summarise, t_quantile_975  # noqa: F401 (re-exported for notebooks)

log = logging.getLogger("laser.report")

BEFORE_TRAINING = "before preference training"  # the rows of iteration-0 accuracies (see start_row)
NO_CATEGORY = "(none)"  # the category of a decision whose prompts carry none

# ---- loading --------------------------------------------------------------------------------------


@dataclass
class Job:
    """One finished job of a sweep: its folder, labels, `results.json` and decisions."""

    path: Path
    method: str
    task: str
    seed: int
    results: dict[str, Any]
    selections: list[dict[str, Any]]

    @property
    def metric(self) -> str:
        """The task's primary metric (accuracy for reasoning, win rate or F1 for the other settings)."""
        return str(self.results.get("primary_metric") or "test/accuracy")

    def accuracy(self, iteration: int | None = None, key: str | None = None) -> float | None:
        """`key` (default: the primary metric) after `iteration` (None: final; 0: before training)."""
        key = key or self.metric
        if iteration is None:
            value = self.results.get("final", {}).get(key)
        else:
            records = [r for r in self.results.get("iterations", []) if r.get("iteration") == iteration]
            value = records[0].get(key) if records else None
        return None if value is None or _is_nan(value) else float(value)

    @property
    def warm_start_steps(self) -> int | None:
        """Supervised warm-start steps the policy had before preference training (`policy.warm_start`
        of the saved config: none is 0); None when the results carry no policy config."""
        policy = (self.results.get("config") or {}).get("policy")
        if not isinstance(policy, dict):
            return None
        return int((policy.get("warm_start") or {}).get("steps", 0) or 0)

    def categories(self) -> list[str]:
        """Task categories with a final primary metric (`<metric>/<category>` keys)."""
        prefix = self.metric + "/"
        return [k[len(prefix):] for k in self.results.get("final", {}) if k.startswith(prefix)]


def read_selections(path: Path) -> list[dict[str, Any]]:
    """The decisions of `selections.jsonl` (none if absent); a line cut short by a kill is dropped."""
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def _labels(results: dict[str, Any]) -> tuple[str, str]:
    """Method and task; older results without the fields fall back on their saved config."""
    config = results.get("config") or {}
    method = results.get("method") or str(config.get("method_name") or "unknown")
    target = str((config.get("task") or {}).get("_target_", "unknown"))
    return method, results.get("task") or target.rsplit(".", 1)[-1].lower()


def load_sweep(sweep_dir: Path) -> tuple[list[Job], list[Path]]:
    """Every complete job under `sweep_dir` and the folders skipped (incomplete or unreadable)."""
    jobs, skipped = [], []
    for path in sorted(Path(sweep_dir).rglob("results.json"), key=lambda p: str(p)):
        folder = path.parent
        try:
            results = json.loads(path.read_text())
        except ValueError:
            log.warning("skipping %s: results.json is not valid JSON", folder)
            skipped.append(folder)
            continue
        if not results.get("complete", False):
            log.warning("skipping %s: incomplete run (complete=false); resume it to include it", folder)
            skipped.append(folder)
            continue
        method, task = _labels(results)
        jobs.append(Job(folder, method, task, int(results.get("seed", 0)), results,
                        read_selections(folder / "selections.jsonl")))
    return jobs, skipped


# ---- statistics -----------------------------------------------------------------------------------


def per_seed_means(jobs: Iterable[Job], value: Callable[[Job], float | None]) -> dict[int, float]:
    """`value` averaged over the jobs of each seed (jobs missing the value are left out)."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for job in jobs:
        v = value(job)
        if v is not None:
            by_seed[job.seed].append(v)
    return {seed: statistics.fmean(vs) for seed, vs in sorted(by_seed.items())}


# ---- the table -------------------------------------------------------------------------------------


def start_row(warm_start_steps: int | None) -> str:
    """The name of an iteration-0 row, honest about the policy it measured: a supervised warm start
    is "SFT", no warm start is not (the paper's SFT baseline is a fine-tuned policy; a base model
    evaluated before preference training is something else), unknown says neither."""
    if warm_start_steps is None:
        return BEFORE_TRAINING
    if warm_start_steps == 0:
        return f"{BEFORE_TRAINING} (no warm start)"
    return f"{BEFORE_TRAINING} (SFT: {warm_start_steps} steps)"



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
        for steps in sorted({j.warm_start_steps for j in task_jobs}, key=lambda s: -1 if s is None else s):
            start_jobs = [j for j in task_jobs if j.warm_start_steps == steps]
            table[task][start_row(steps)] = _cell(start_jobs, 0, categories, cost=False)
        for method in sorted({j.method for j in task_jobs}):
            table[task][method] = _cell([j for j in task_jobs if j.method == method], None, categories, cost=True)
    return table


# ---- pseudo-regret ----------------------------------------------------------------------------------


def majority_category(categories: dict[str, int]) -> str:
    """The category most of a decision's prompts belong to (ties: the first by name)."""
    if not categories:
        return NO_CATEGORY
    return max(sorted(categories), key=lambda c: categories[c])


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


# ---- writing ---------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or _is_nan(value) else f"{value:.{digits}f}"


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


def _accuracy_section(table: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    tasks = list(table)
    rows_order = list(dict.fromkeys(row for task in tasks for row in table[task]))
    rows = [[row] + [_summary_cell(table[t][row]["accuracy"]) if row in table[t] else "–" for t in tasks]
            for row in rows_order]
    lines = ["## Final test accuracy", "",
             "Mean ± std over seeds, [95% Student-t confidence interval], n = seeds. Jobs sharing method,",
             "task and seed are averaged first. `before preference training` is the same jobs at iteration 0:",
             "`(SFT: N steps)` after N supervised warm-start steps on the task's training targets, `(no warm",
             "start)` the policy as loaded (a base model is not the paper's SFT baseline).",
             ""] + _markdown_table(["method"] + tasks, rows)
    for task, cells in table.items():
        categories = list(next(iter(cells.values()))["categories"])
        header = ["method", "accuracy", "95% CI", "seeds"] + categories + ["RM calls / run", "wall s / run"]
        rows = [[row, _mean_std(c["accuracy"]), _interval(c["accuracy"]), str(c["accuracy"].n)]
                + [_mean_std(c["categories"][k]) for k in categories]
                + [_fmt(c.get("rm_calls_per_run"), 0), _fmt(c.get("wall_seconds_per_run"), 1)]
                for row, c in cells.items()]
        lines += ["", f"### {task}", ""] + _markdown_table(header, rows)
    return lines


def _regret_section(means: dict[str, dict[str, dict[str, float]]], summary: dict[str, dict[str, Summary]]) -> list[str]:
    lines = ["", "## Pseudo-regret", "",
             "A pseudo-regret estimated from the sweep's own decisions: per task and category, each RM's mean",
             "gold pair accuracy (fraction of a decision's pairs whose chosen response is right and rejected",
             "wrong) over all decisions in the sweep that used it alone; the oracle arm is the best RM. A",
             "decision adds the oracle's mean minus its RM's mean for its majority category. Rarely chosen",
             "RMs have noisy means. Final cumulative pseudo-regret per run, mean ± std over seeds:", ""]
    rows = [[task, method, _mean_std(s, 2), _interval(s, 2), str(s.n)]
            for task, by_method in summary.items() for method, s in by_method.items()]
    lines += _markdown_table(["task", "method", "pseudo-regret", "95% CI", "seeds"], rows) + [""]
    rows = [[task, category, max(arms, key=arms.get), ", ".join(f"{a} {v:.2f}" for a, v in arms.items())]
            for task, by_category in means.items() for category, arms in by_category.items()]
    return lines + _markdown_table(["task", "category", "oracle RM", "mean gold pair accuracy"], rows)


def render_markdown(sweep_dir: Path, jobs: list[Job], skipped: list[Path], table: dict[str, Any],
                    means: dict[str, Any], regret: dict[str, dict[str, Summary]]) -> str:
    """report.md: the accuracy tables, the pseudo-regret (if any) and the skipped jobs."""
    lines = ["# LASeR sweep report", "",
             f"Sweep `{sweep_dir}`: {len(jobs)} complete jobs, {len(skipped)} skipped.", ""]
    lines += _accuracy_section(table)
    if regret:
        lines += _regret_section(means, regret)
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
            writer.writerow({"method": row, **{k: "" if v is None or _is_nan(v) else v for k, v in out.items()}})


def _json_ready(value: Any) -> Any:
    """Summaries as dicts and NaN as null, so report.json is strict JSON."""
    if isinstance(value, Summary):
        return _json_ready(asdict(value))
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return None if _is_nan(value) else value


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def write_report(sweep_dir: Path | str, out_dir: Path | str | None = None) -> list[Path]:
    """Read the sweep, write report.md/.csv/.json and the plots into `out_dir` (default: the sweep
    folder); returns the files written."""
    from laser.plots import write_plots  # matplotlib is only needed here

    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir
    jobs, skipped = load_sweep(sweep_dir)
    if not jobs:
        raise FileNotFoundError(f"no complete job (results.json with complete=true) under {sweep_dir}")
    out.mkdir(parents=True, exist_ok=True)
    table = build_table(jobs)
    means, curves = regret_curves(jobs)
    regret = regret_summary(curves)
    files = [out / "report.md", out / "report.csv", out / "report.json"]
    files[0].write_text(render_markdown(sweep_dir, jobs, skipped, table, means, regret))
    write_csv(table, files[1])
    payload = {"sweep": str(sweep_dir), "jobs": [str(j.path) for j in jobs], "skipped": [str(p) for p in skipped],
               "table": table, "pseudo_regret": {"arm_means": means, "final": regret}}
    files[2].write_text(json.dumps(_json_ready(payload), indent=2) + "\n")
    return files + write_plots(jobs, out, curves)


def main(argv: list[str] | None = None) -> None:
    """CLI: `python -m laser.report <sweep dir> [--out DIR]`; prints the files written."""
    parser = argparse.ArgumentParser(prog="python -m laser.report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. outputs/multiruns/<time>")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for path in write_report(args.sweep_dir, args.out):
        print(path)


if __name__ == "__main__":
    main()
