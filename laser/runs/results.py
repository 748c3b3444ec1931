"""A run's results: `IterationTracker` accumulates each iteration's figures (losses, RM choices, tokens,
phase times, skipped steps, RM faults) and closes them into the records of `results.json`, whose
payload (the contract in the README) `results_payload` assembles; `method_label` names its row.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class IterationTracker:
    """Accumulates one iteration's figures (losses, choices, tokens) and closes it into a record."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.selection_counts: Counter[str] = Counter()  # whole run
        self.skipped: Counter[str] = Counter()  # steps skipped, by reason
        self.faults: Counter[str] = Counter()  # RM faults: faults/<kind> and faults/rm/<name>
        self.steps = 0  # LASeR steps taken, skipped ones included
        self.total_phase_seconds: Counter[str] = Counter()
        self.total_generated_tokens = 0
        self._reset()

    def _reset(self) -> None:
        self.losses: list[float] = []
        self.iteration_counts: Counter[str] = Counter()
        self.generated_tokens = 0
        self.phase_seconds: Counter[str] = Counter()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase of the step (embed, bandit, generate, score, train) into this iteration's record."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.phase_seconds[name] += elapsed
            self.total_phase_seconds[name] += elapsed

    def on_step(self, generated_tokens: int) -> None:
        self.steps += 1
        self.generated_tokens += generated_tokens
        self.total_generated_tokens += generated_tokens

    def on_decision(self, arm_names: list[str]) -> None:
        for name in arm_names:
            self.iteration_counts[name] += 1
            self.selection_counts[name] += 1

    def on_loss(self, loss: float) -> None:
        self.losses.append(loss)

    def close(self, iteration: int, metrics: dict[str, float], rm_calls: dict[str, int], generated_tokens: int,
              wall_seconds: float, all_names: list[str]) -> dict[str, Any]:
        """Record iteration `iteration` (0 = the evaluation before any training). RM calls and generated
        tokens come from the caller, summed over ranks; phase times are this process's."""
        record = {
            "iteration": iteration,
            **metrics,
            "train/loss": (sum(self.losses) / len(self.losses)) if self.losses else math.nan,
            "rm_selection_counts": {name: self.iteration_counts.get(name, 0) for name in all_names},
            "rm_calls": dict(rm_calls),
            "generated_tokens": generated_tokens,
            "phase_seconds": dict(self.phase_seconds),
            "wall_seconds": wall_seconds,
        }
        self.records.append(record)
        self._reset()
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records, "selection_counts": dict(self.selection_counts),
                "skipped": dict(self.skipped), "faults": dict(self.faults), "steps": self.steps, "losses": self.losses,
                "iteration_counts": dict(self.iteration_counts), "generated_tokens": self.generated_tokens,
                "phase_seconds": dict(self.phase_seconds), "total_phase_seconds": dict(self.total_phase_seconds),
                "total_generated_tokens": self.total_generated_tokens}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.records = list(state["records"])
        self.selection_counts = Counter(state["selection_counts"])
        self.skipped = Counter(state["skipped"])
        self.steps = state["steps"]
        self.faults = Counter(state.get("faults", {}))
        self.losses = list(state["losses"])
        self.iteration_counts = Counter(state["iteration_counts"])
        self.generated_tokens = state["generated_tokens"]
        self.phase_seconds = Counter(state.get("phase_seconds", {}))
        self.total_phase_seconds = Counter(state.get("total_phase_seconds", {}))
        self.total_generated_tokens = state.get("total_generated_tokens", 0)


def results_payload(seed: int, wall_seconds: float, config: dict, tracker: IterationTracker,
                    all_names: list[str], rm_calls: dict[str, int], complete: bool, method: str = "",
                    task: str = "", primary_metric: str = "test/accuracy", skipped_rows: int = 0,
                    rm_tokens: dict[str, int] | None = None, generated_tokens: int | None = None,
                    data: dict[str, Any] | None = None, environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `results.json` contract (see README): final metrics are the last iteration's. `data` is how
    much of the training set an iteration covers (`PromptDataModule.iteration_plan`); `environment`,
    where the run came from (`laser.runs.provenance.environment`)."""
    last = tracker.records[-1] if tracker.records else {}
    final = {k: v for k, v in last.items() if k.startswith("test/")}
    return {
        "seed": seed,
        "wall_seconds": wall_seconds,
        "complete": complete,
        "method": method,
        "task": task,
        "primary_metric": primary_metric,
        "data/skipped_rows": skipped_rows,
        "data": dict(data or {}),
        "config": config,
        "environment": dict(environment or {}),
        "final": final,
        "iterations": tracker.records,
        "rm_selection_counts": {name: tracker.selection_counts.get(name, 0) for name in all_names},
        "rm_calls": dict(rm_calls),
        "rm_tokens": dict(rm_tokens or {}),
        "generated_tokens": tracker.total_generated_tokens if generated_tokens is None else generated_tokens,
        "phase_seconds": dict(tracker.total_phase_seconds),
        "skipped_steps": dict(tracker.skipped),
        "faults": dict(tracker.faults),
    }


def method_label(method_name: str | None, selector: Any) -> str:
    """The results-table row a run belongs to: `method_name` (the bandit choice by default; the
    selector's class name without one), with single-RM runs named by their RM (`single:<rm>`) since
    `bandit=single` covers several rows (a suffix after the choice, as in `single_0_guard`, is kept)."""
    label = str(method_name or type(selector).__name__)
    single = re.match(r"single(_\d+)?", label)
    if single and hasattr(selector, "fixed_arm"):  # what follows the choice stays: single_0_guard -> single:<rm>_guard
        return f"single:{selector.arm_names[selector.fixed_arm]}{label[single.end():]}"
    return label
