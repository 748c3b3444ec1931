"""A sweep's jobs as `report` reads them: every complete `results.json` under a folder, with its labels
(method, task, seed) and its `selections.jsonl` decisions. Jobs whose `results.json` says
`complete: false` (stopped or killed runs) are skipped with a warning naming them."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laser.report.stats import is_nan

log = logging.getLogger("laser.report")

NO_CATEGORY = "(none)"  # the category of a decision whose prompts carry none


def majority_category(categories: dict[str, int]) -> str:
    """The category most of a step's prompts belong to (ties: the first by name); shared by the
    pseudo-regret and the counterfactuals, so a step has one category in every table."""
    if not categories:
        return NO_CATEGORY
    return max(sorted(categories), key=lambda c: categories[c])


@dataclass
class Job:
    """One finished job of a sweep: its folder, labels, `results.json` and decisions."""

    path: Path
    method: str
    task: str
    seed: int
    results: dict[str, Any]
    selections: list[dict[str, Any]]
    counterfactuals: list[dict[str, Any]] = field(default_factory=list)  # runs with laser.counterfactuals=true

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
        return None if value is None or is_nan(value) else float(value)

    @property
    def warm_start(self) -> tuple[int, float | None] | None:
        """(steps, target accuracy) of the supervised warm start the policy had before preference training
        (`policy.warm_start` of the saved config; none is (0, None)); None when the results carry no
        policy config. With a target, `steps` is the most the warm start could take."""
        policy = (self.results.get("config") or {}).get("policy")
        if not isinstance(policy, dict):
            return None
        warm = policy.get("warm_start") or {}
        return int(warm.get("steps", 0) or 0), warm.get("target_accuracy")

    @property
    def passes_per_iteration(self) -> float | None:
        """Passes over the training set per iteration (`results.json`'s `data`); None in older results."""
        value = (self.results.get("data") or {}).get("passes_per_iteration")
        return None if value is None else float(value)

    def categories(self) -> list[str]:
        """Task categories with a final primary metric (`<metric>/<category>` keys)."""
        prefix = self.metric + "/"
        return [k[len(prefix):] for k in self.results.get("final", {}) if k.startswith(prefix)]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The lines of a job's JSONL file, e.g. `selections.jsonl` or `counterfactuals.jsonl` (none if
    absent); a line cut short by a kill is dropped."""
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
                        read_jsonl(folder / "selections.jsonl"), read_jsonl(folder / "counterfactuals.jsonl")))
    return jobs, skipped
