"""Head-to-head win rates from a sweep's own outputs: LASeR against each baseline, on the same prompts.

The paper reports instruction following as the win rate of LASeR's responses over each baseline's. Every
instruction-following job writes its test responses at each evaluation (`model_outputs/iteration-<k>.json`,
AlpacaEval's format). For each task and seed, a LASeR job's final responses are paired by instruction with
those of every baseline job of the same seed, and with the LASeR job's own iteration-0 responses (the
policy before preference training). One judge is asked in both orders (LASeR first, then the baseline
first) and the two verdicts are averaged (`laser.tasks.win_rate.win_rate`): a judge that always prefers
the first position scores exactly 0.5. A win counts 1, a tie 0.5 (a verdict that flips with the order is
a tie), a loss 0. Per-seed win rates are summarised over seeds as the accuracy table is (mean, std, 95%
t-interval); wins, ties and losses are counted over all judged prompts.

LASeR rows are the methods whose name starts with `linucb` (bandit=linucb, linucb_explore, linucb/paper,
...) unless named; every other method is a baseline.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from laser.errors import LaserConfigError
from laser.report.jobs import Job
from laser.report.stats import summarise
from laser.report.tables import start_row
from laser.tasks.win_rate import Judge, read_alpaca_eval_outputs, win_rate

log = logging.getLogger("laser.report")

LASER_PREFIX = "linucb"  # the default LASeR rows: LinUCB-based methods
OUTPUTS_FOLDER = "model_outputs"
_OUTPUTS_FILE = re.compile(r"iteration-(\d+)\.json")


def evaluation_outputs(job: Job, iteration: int | None = None) -> list[dict] | None:
    """A job's test responses (AlpacaEval rows) at `iteration` (None: its last evaluation); None when
    the job wrote none (a task without outputs files, or that iteration missing)."""
    files = {int(m.group(1)): path for path in (job.path / OUTPUTS_FOLDER).glob("iteration-*.json")
             if (m := _OUTPUTS_FILE.fullmatch(path.name))}
    if not files:
        return None
    chosen = max(files) if iteration is None else iteration
    return read_alpaca_eval_outputs(files[chosen]) if chosen in files else None


@dataclass(frozen=True)
class Matchup:
    """One LASeR job's final responses against one opponent's responses of the same seed."""

    task: str
    laser: str
    opponent: str
    seed: int
    laser_rows: list[dict]
    opponent_rows: list[dict]
    where: str  # the two folders, for warnings


def laser_rows_of(methods: list[str], laser_methods: list[str] | None) -> list[str]:
    """The LASeR methods of a task: those named (when given), else those starting with `linucb`."""
    if laser_methods:
        return [m for m in methods if m in laser_methods]
    return [m for m in methods if m.startswith(LASER_PREFIX)]


def matchups(jobs: list[Job], laser_methods: list[str] | None = None) -> list[Matchup]:
    """Every (LASeR job, opponent) pairing of one task and seed: each baseline job of that seed, and the
    LASeR job's own responses before preference training (its iteration-0 evaluation)."""
    outputs = {job.path: evaluation_outputs(job) for job in jobs}
    found = [job for job in jobs if outputs[job.path] is not None]
    pairings = []
    for task in sorted({job.task for job in found}):
        task_jobs = [job for job in found if job.task == task]
        methods = sorted({job.method for job in task_jobs})
        lasers = laser_rows_of(methods, laser_methods)
        for job in sorted((j for j in task_jobs if j.method in lasers), key=lambda j: (j.method, j.seed, str(j.path))):
            start = evaluation_outputs(job, 0)
            if start is not None:
                pairings.append(Matchup(task, job.method, start_row(job.warm_start), job.seed, outputs[job.path],
                                        start, str(job.path)))
            for other in sorted(task_jobs, key=lambda j: (j.method, str(j.path))):
                if other.method not in lasers and other.seed == job.seed:
                    pairings.append(Matchup(task, job.method, other.method, job.seed, outputs[job.path],
                                            outputs[other.path], f"{job.path} vs {other.path}"))
    return pairings


def head_to_head(jobs: list[Job], judge: Judge, laser_methods: list[str] | None = None) -> dict[str, Any]:
    """{"judge", "both_orders", "tasks": {task: {laser method: {opponent: cell}}}}, where a cell holds
    `win_rate` (a Summary over seeds of the per-seed rates), `seeds`, `prompts` (judged, all seeds),
    `wins`, `ties`, `losses`. Pairings whose prompts differ are left out with a warning."""
    from laser.evaluation.winrate import match_outputs

    per_seed: dict[tuple[str, str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for m in matchups(jobs, laser_methods):
        try:
            prompts, ours, theirs = match_outputs(m.laser_rows, m.opponent_rows)
        except LaserConfigError as error:
            log.warning("head-to-head: skipping %s: %s", m.where, error)
            continue
        result = win_rate(prompts, ours, theirs, judge, both_orders=True)
        key = (m.task, m.laser, m.opponent)
        per_seed[key][m.seed].append(result.rate)
        for i, count in enumerate((result.n, result.wins, result.ties, result.losses)):
            counts[key][i] += count
    tasks: dict[str, dict[str, dict[str, Any]]] = {}
    for (task, laser, opponent), by_seed in per_seed.items():
        n, wins, ties, losses = counts[(task, laser, opponent)]
        means = [sum(rates) / len(rates) for _, rates in sorted(by_seed.items())]
        tasks.setdefault(task, {}).setdefault(laser, {})[opponent] = {
            "win_rate": summarise(means), "seeds": sorted(by_seed), "prompts": n,
            "wins": wins, "ties": ties, "losses": losses}
    return {"judge": judge.describe(), "both_orders": True, "tasks": tasks}


def configured_judge(jobs: list[Job]) -> Judge | None:
    """The judge the jobs with outputs files evaluated with (`task.judge` of their saved config), built
    again; None when they had none. Jobs that disagree on it need an explicit `--judge`."""
    from omegaconf import OmegaConf

    from laser.config.instantiate import instantiate

    specs = [((job.results.get("config") or {}).get("task") or {}).get("judge") for job in jobs
             if evaluation_outputs(job) is not None]
    distinct = [s for i, s in enumerate(specs) if s not in specs[:i]]
    if len(distinct) > 1:
        raise LaserConfigError(f"the sweep's jobs used {len(distinct)} different task.judge configs: "
                               "name one for the head-to-head with --judge length|rm:<path>|lm:<path>")
    if not distinct or distinct[0] is None:
        return None
    judge = instantiate(OmegaConf.create(distinct[0]), _convert_="all")
    if not isinstance(judge, Judge):
        raise LaserConfigError(f"the jobs' task.judge built a {type(judge).__name__}, not a Judge")
    return judge
