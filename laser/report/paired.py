"""Paired differences against a baseline method: each method's final test metric minus the baseline's on
the same seed, under the same settings (issue #21 item 3).

Methods that ran on the same seeds share their data order, warm start and RM noise streams, so the
difference per seed removes what the seeds share and is the honest unit of a claim such as "LinUCB beats
the score ensemble". Per method against the baseline: the per-seed differences, their mean, a 95%
Student-t interval (scipy's one-sample t-test on the differences, i.e. `ttest_rel`), how many seeds the
method is higher, tied or lower, and the two-sided Wilcoxon signed-rank p-value (`scipy.stats.wilcoxon`).

Jobs pair only when they share task, seed and every other setting: a config key that differs between
jobs of one method and one seed (e.g. `rm_pool.noise_arms` in a sweep over it) splits the comparison
into one group per value (`setting_keys`); keys that only name the run (folders, loggers, resume) are
not settings, and a setting that changed only together with the seed cannot be told from it. Jobs sharing method, task, seed and settings are averaged first, as in the results table.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats

from laser.errors import LaserConfigError
from laser.report.jobs import Job
from laser.report.stats import CONFIDENCE
from laser.report.tables import per_seed_means

log = logging.getLogger("laser.report")

DEFAULT_BASELINE = "score_ensemble"  # the paper's cost-matched rival: every RM on every batch
EXACT_UP_TO = 50  # Wilcoxon: exact null distribution up to this many nonzero differences, normal beyond
_DECIMALS = 12  # differences are rounded here: 0.7 - 0.6 and 0.6 - 0.5 are the same difference, and 0 is 0
_NOT_SETTINGS = {"seed", "resume", "stop_after_iteration", "method_name"}  # and the groups and keys below
_NOT_SETTING_GROUPS = ("paths.", "logger.")
_UNSET = "(unset)"  # a setting one job's config lacks


@dataclass(frozen=True)
class PairedComparison:
    """One method against the baseline over the seeds both ran: `differences` are method minus baseline
    per seed (in `seeds` order). `ci_low`/`ci_high` are NaN below 2 seeds, `p_value` is None when no
    test is possible; `note` says why, and when the seeds are too few for p < 0.05 at all."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    mean: float
    ci_low: float
    ci_high: float
    higher: int
    ties: int
    lower: int
    p_value: float | None
    note: str


def wilcoxon_p(differences: list[float]) -> tuple[float | None, str]:
    """Two-sided Wilcoxon signed-rank p-value of paired differences, and a note. Zero differences are
    dropped (Wilcoxon's convention: a tie says nothing about the sign); exact null distribution up to
    EXACT_UP_TO nonzero differences, normal approximation beyond (the same in every scipy >= 1.13).
    None, with the reason, when every difference is zero (scipy raises or returns NaN there)."""
    nonzero = [d for d in differences if d != 0]
    if not nonzero:
        return None, "n/a: every difference is zero" if differences else "n/a: no paired seed"
    method = "exact" if len(nonzero) <= EXACT_UP_TO else "auto"
    p = float(stats.wilcoxon(nonzero, method=method).pvalue)
    smallest = 2 / 2 ** len(nonzero)  # the exact test's p when every sign agrees
    if smallest > 1 - CONFIDENCE:
        return p, f"{len(nonzero)} nonzero differences: p cannot go below {smallest:.3g}"
    return p, ""


def paired_comparison(method: dict[int, float], baseline: dict[int, float]) -> PairedComparison:
    """`method` against `baseline` (each {seed: metric}) on the seeds both have."""
    seeds = sorted(set(method) & set(baseline))
    differences = [round(method[s] - baseline[s], _DECIMALS) for s in seeds]
    if not seeds:
        return PairedComparison((), (), math.nan, math.nan, math.nan, 0, 0, 0, None, "no seed in common")
    mean = statistics.fmean(differences)
    notes = []
    if len(seeds) < 2:
        low = high = math.nan
        notes.append("1 seed: no interval")
    elif len(set(differences)) == 1:  # no spread: the t statistic is undefined, the interval a point
        low = high = mean
        notes.append("every seed differs by the same amount")
    else:
        interval = stats.ttest_1samp(differences, 0.0).confidence_interval(CONFIDENCE)
        low, high = float(interval.low), float(interval.high)
    p, note = wilcoxon_p(differences)
    notes += [note] if note else []
    return PairedComparison(tuple(seeds), tuple(differences), mean, low, high,
                            sum(d > 0 for d in differences), sum(d == 0 for d in differences),
                            sum(d < 0 for d in differences), p, "; ".join(notes))


# ---- which jobs pair ---------------------------------------------------------------------------------


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A saved config as {dotted key: JSON text of the value}, without what only names the run."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_config(value, name + "."))
        elif not (name in _NOT_SETTINGS or name.startswith(_NOT_SETTING_GROUPS) or str(key).endswith("_dir")):
            flat[name] = json.dumps(value, sort_keys=True)
    return flat


def setting_keys(jobs: list[Job]) -> list[str]:
    """Config keys that differ between jobs of the same method and seed (a key one of them lacks too):
    the settings a sweep varied beside the method. A key set by the method, or derived from the seed,
    does not count."""
    groups: dict[tuple[str, int], list[dict[str, str]]] = defaultdict(list)
    for job in jobs:
        groups[(job.method, job.seed)].append(flat_config(job.results.get("config") or {}))
    keys: set[str] = set()
    for configs in groups.values():
        for key in set().union(*configs):
            if len({config.get(key, _UNSET) for config in configs}) > 1:
                keys.add(key)
    return sorted(keys)


def settings_label(job: Job, keys: list[str]) -> str:
    """`key=value, ...` of the job's settings ("" when the sweep varied nothing beside the method)."""
    flat = flat_config(job.results.get("config") or {})
    return ", ".join(f"{key}={json.loads(flat[key]) if key in flat else _UNSET}" for key in keys)


def method_names(jobs: list[Job]) -> list[str]:
    return sorted({job.method for job in jobs})


def paired_table(jobs: list[Job], baseline: str | None = None) -> dict[str, Any] | None:
    """{"baseline", "tasks": {task: {settings: {method: PairedComparison}}}, "unpaired": [(task, settings)]}
    on each job's final primary metric. `baseline` None is DEFAULT_BASELINE if the sweep ran it, else
    None (nothing to compare against); a named baseline the sweep did not run is an error."""
    methods = method_names(jobs)
    if baseline is None:
        if DEFAULT_BASELINE not in methods:
            return None
        baseline = DEFAULT_BASELINE
    if baseline not in methods:
        raise LaserConfigError(f"baseline {baseline!r} is not a method of this sweep; valid: {', '.join(methods)}")
    tasks: dict[str, dict[str, dict[str, PairedComparison]]] = {}
    unpaired: list[tuple[str, str]] = []
    for task in sorted({job.task for job in jobs}):
        task_jobs = [job for job in jobs if job.task == task]
        keys = setting_keys(task_jobs)
        groups: dict[str, list[Job]] = defaultdict(list)
        for job in task_jobs:
            groups[settings_label(job, keys)].append(job)
        for label, group in sorted(groups.items()):
            base = per_seed_means([j for j in group if j.method == baseline], lambda j: j.accuracy())
            others = [m for m in method_names(group) if m != baseline]
            if not base:
                unpaired.append((task, label))
                continue
            tasks.setdefault(task, {})[label] = {m: paired_comparison(per_seed_means(
                [j for j in group if j.method == m], lambda j: j.accuracy()), base) for m in others}
    return {"baseline": baseline, "metrics": sorted({job.metric for job in jobs}), "tasks": tasks, "unpaired": unpaired}


# ---- report.md, report_paired.csv and the log ---------------------------------------------------------


def _signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.3f}"


def _interval(c: PairedComparison) -> str:
    return "–" if math.isnan(c.ci_low) else f"[{_signed(c.ci_low)}, {_signed(c.ci_high)}]"


def _p(c: PairedComparison) -> str:
    return "n/a" if c.p_value is None else f"{c.p_value:.3g}"


def _per_seed(c: PairedComparison) -> str:
    return ", ".join(f"{seed}: {_signed(d)}" for seed, d in zip(c.seeds, c.differences, strict=True))


def paired_rows(paired: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per (task, settings, method): what report.md, report_paired.csv and the log show."""
    return [{"task": task, "settings": label, "method": method, "baseline": paired["baseline"],
             "seeds": len(c.seeds), "mean_difference": c.mean, "ci_low": c.ci_low, "ci_high": c.ci_high,
             "higher": c.higher, "ties": c.ties, "lower": c.lower, "wilcoxon_p": c.p_value, "note": c.note,
             "differences": _per_seed(c), "comparison": c}
            for task, by_label in paired["tasks"].items() for label, by_method in by_label.items()
            for method, c in by_method.items()]


def paired_section(paired: dict[str, Any] | None, methods: list[str]) -> list[str]:
    """report.md's section: the table, or why there is none."""
    if paired is None:
        return ["", "## Paired differences", "",
                f"No baseline: the default `{DEFAULT_BASELINE}` is not in this sweep; choose one with "
                f"`python -m laser.report <sweep> --baseline <method>` (methods: {', '.join(methods)})."]
    baseline, rows = paired["baseline"], paired_rows(paired)
    lines = ["", f"## Paired differences against `{baseline}`", "",
             f"Each method's final {' / '.join(paired['metrics'])} minus `{baseline}`'s on the same seed (and the same",
             "settings, where the sweep varied any beside the method): the mean difference, its 95% Student-t",
             "interval, the seeds where the method is higher / tied / lower, and the two-sided Wilcoxon",
             "signed-rank p (zero differences dropped; exact up to 50 nonzero differences). With 5 or fewer",
             "nonzero differences no p can fall below 0.05. Another baseline: `--baseline <method>`.", ""]
    with_settings = any(row["settings"] for row in rows)
    header = ["task"] + (["settings"] if with_settings else []) + [
        "method", "seeds", "mean difference", "95% CI", "higher / ties / lower", "Wilcoxon p", "per seed", "note"]
    table = [[r["task"]] + ([r["settings"] or "–"] if with_settings else []) + [
        r["method"], str(r["seeds"]), _signed(r["mean_difference"]), _interval(r["comparison"]),
        f"{r['higher']} / {r['ties']} / {r['lower']}", _p(r["comparison"]), r["differences"] or "–", r["note"] or "–"]
        for r in rows]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table] if table else [f"Only `{baseline}` ran: nothing to pair."]
    for task, label in paired["unpaired"]:
        lines.append(f"- `{task}`{f' ({label})' if label else ''}: `{baseline}` did not run there; nothing paired.")
    return lines


PAIRED_COLUMNS = ["task", "settings", "method", "baseline", "seeds", "mean_difference", "ci_low", "ci_high",
                  "higher", "ties", "lower", "wilcoxon_p", "note", "differences"]


def write_paired_csv(paired: dict[str, Any], path: Path) -> None:
    """report_paired.csv: one row per (task, settings, method); empty cells where a value is undefined."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PAIRED_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in paired_rows(paired):
            writer.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v for k, v in row.items()})


def log_paired(paired: dict[str, Any] | None, methods: list[str]) -> None:
    """The table in the log, one line per method (or why there is none)."""
    if paired is None:
        log.info("no paired differences: the default baseline %s is not in this sweep (methods: %s); "
                 "choose one with --baseline", DEFAULT_BASELINE, ", ".join(methods))
        return
    for r in paired_rows(paired):
        c = r["comparison"]
        log.info("paired vs %s: %s%s %s: mean %s %s over %d seeds, higher / ties / lower %d / %d / %d, "
                 "Wilcoxon p %s%s", r["baseline"], r["task"], f" ({r['settings']})" if r["settings"] else "",
                 r["method"], _signed(c.mean), _interval(c), len(c.seeds), c.higher, c.ties, c.lower, _p(c),
                 f" ({c.note})" if c.note else "")
