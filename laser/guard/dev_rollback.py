"""A guard against reward hacking: every `check_every` steps (or once, at the end of each iteration),
measure the policy on a small labelled dev set held out of training; if any category's dev accuracy is more
than `max_drop` below the best it has been, undo the steps since the last check (the adapter goes back to
what it was then), give each of their decisions on a fallen category the normalised reward `penalty` (one
more bandit update, so the selector learns that the RM it chose there did harm), and rest the fallen
categories (no training steps on their batches) for `cooldown` checks.

Why: an RM the policy has learned to exploit keeps scoring its chosen responses highly while the task
metric falls (docs/monitoring.md), and the paper's selector reward, minus the training loss, cannot see
that: the loss is low exactly when the policy already agrees with the RM. A few labelled prompts can.
The dev examples are the last `dev_per_category` training examples of each category (`dev_split`), never
trained on in a guarded run; they may have been in a supervised warm start's data, so the guard reads
changes in their accuracy, not its level.

The maths is here, without Lightning; `laser/step/iteration.py` calls it at the checks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from laser.errors import LaserConfigError
from laser.selection.base import Selection
from laser.tasks.base import Example

NO_CATEGORY = ""  # the category of examples whose task has none: the guard watches overall accuracy


def dev_split(examples: list[Example], per_category: int) -> list[Example]:
    """The guard's dev set: the last `per_category` examples of each category, in their order in `examples`
    (a category with fewer keeps half of its examples for training)."""
    by_category: dict[str, list[Example]] = {}
    for example in examples:
        by_category.setdefault(example.category, []).append(example)
    dev_uids = set()
    for members in by_category.values():
        take = min(per_category, len(members) // 2)
        dev_uids.update(e.uid for e in members[len(members) - take:])
    return [e for e in examples if e.uid in dev_uids]


def category_accuracy(examples: list[Example], correct: list[bool]) -> dict[str, float]:
    """Accuracy per category (`NO_CATEGORY` for a task without categories)."""
    hits: dict[str, list[bool]] = {}
    for example, right in zip(examples, correct, strict=True):
        hits.setdefault(example.category, []).append(right)
    return {category: sum(h) / len(h) for category, h in sorted(hits.items())}


def fallen_categories(before: dict[str, float], after: dict[str, float], max_drop: float) -> list[str]:
    """Categories whose accuracy fell by more than `max_drop` (a negative `max_drop` demands a gain)."""
    return [c for c in sorted(before) if c in after and before[c] - after[c] > max_drop + 1e-12]


def majority_category(examples: list[Example]) -> str:
    """The category most of `examples` belong to (ties: the first by name)."""
    counts = Counter(e.category for e in examples)
    return max(sorted(counts), key=lambda c: counts[c]) if counts else NO_CATEGORY


@dataclass
class Verdict:
    """What the guard decided at one check."""

    accuracy: dict[str, float]  # dev accuracy per category of the policy at the check
    fallen: list[str]           # categories more than max_drop below their best: the steps since the last check are undone
    penalised: list[tuple[Selection, torch.Tensor]] = field(default_factory=list)  # decisions to penalise

    @property
    def rolled_back(self) -> bool:
        return bool(self.fallen)


class DevRollback:
    """The guard's state: the best dev accuracy per category so far, the categories resting and for how
    many checks, and (between two checks) the adapter at the last check and the decisions since.

    Args:
        dev_per_category: dev examples per category, held out of training (`dev_split`).
        max_drop: undo the steps since the last check when a category's dev accuracy is more than this below
            its best so far (negative: demand a gain).
        penalty: the normalised reward given to each undone decision on a fallen category (an extra
            selector update); None gives none.
        cooldown: checks a fallen category rests (its batches are skipped) after an undo.
        check_every: steps between checks within an iteration; None: one check, at the iteration's end.
        eval_batch_size: dev prompts per greedy generate call.
    """

    def __init__(self, dev_per_category: int = 64, max_drop: float = 0.05, penalty: float | None = 0.0,
                 cooldown: int = 1, check_every: int | None = None, eval_batch_size: int = 64) -> None:
        if not isinstance(dev_per_category, int) or dev_per_category < 1:
            raise LaserConfigError(f"guard.dev_per_category={dev_per_category!r} must be an integer >= 1")
        if not -1.0 <= max_drop <= 1.0:
            raise LaserConfigError(f"guard.max_drop={max_drop!r} must be in [-1, 1] (an accuracy difference)")
        if penalty is not None and not 0.0 <= penalty <= 1.0:
            raise LaserConfigError(f"guard.penalty={penalty!r} must be null or in [0, 1] (a normalised reward)")
        if not isinstance(cooldown, int) or cooldown < 0:
            raise LaserConfigError(f"guard.cooldown={cooldown!r} must be an integer >= 0")
        if check_every is not None and (not isinstance(check_every, int) or check_every < 1):
            raise LaserConfigError(f"guard.check_every={check_every!r} must be null (once per iteration) or an integer >= 1")
        if not isinstance(eval_batch_size, int) or eval_batch_size < 1:
            raise LaserConfigError(f"guard.eval_batch_size={eval_batch_size!r} must be an integer >= 1")
        self.dev_per_category, self.max_drop, self.penalty = dev_per_category, max_drop, penalty
        self.cooldown, self.check_every, self.eval_batch_size = cooldown, check_every, eval_batch_size
        self.best_accuracy: dict[str, float] | None = None  # per category, over the policies kept so far
        self.resting: dict[str, int] = {}  # category -> checks it still rests
        self.rollbacks = 0  # undos in the whole run
        self.dev: list[Example] = []  # `hold_out`
        self.adapter_at_check: dict[str, torch.Tensor] | None = None  # what an undo restores
        self.decisions: list[tuple[str, Selection, torch.Tensor]] = []  # since the last check
        self.tally: dict[str, float] = {}  # this iteration's checks, for its record (`iteration_metrics`)

    def hold_out(self, train: list[Example]) -> set[str]:
        """Take the dev set from the training examples; returns its uids (which training must skip)."""
        self.dev = dev_split(train, self.dev_per_category)
        return {e.uid for e in self.dev}

    def measure(self, policy, task) -> dict[str, float]:
        """Greedy dev accuracy per category of `policy` (a `Policy`) on `task`'s grader."""
        correct: list[bool] = []
        for start in range(0, len(self.dev), self.eval_batch_size):
            batch = self.dev[start:start + self.eval_batch_size]
            encoded = policy.encode([task.format_prompt(example) for example in batch])
            samples = policy.sample(encoded, 1, greedy=True, stop_strings=task.stop_strings)
            correct += [task.is_correct(text, example) for text, example in zip(samples.texts, batch, strict=True)]
        return category_accuracy(self.dev, correct)

    def baseline(self, accuracy: dict[str, float]) -> None:
        """The starting policy's dev accuracy: the first best."""
        self.best_accuracy = dict(accuracy)

    def begin(self, adapter: dict[str, torch.Tensor]) -> None:
        """Remember the adapter at this check (or the iteration's start): what the next undo restores."""
        self.adapter_at_check, self.decisions = adapter, []

    def due(self, steps_done: int, steps_in_iteration: int) -> bool:
        """True after the step that ends a `check_every` chunk (the iteration's last is checked at its end)."""
        return bool(self.check_every) and steps_done % self.check_every == 0 and steps_done < steps_in_iteration

    def rests(self, batch: list[Example]) -> bool:
        """True when the batch's category is resting: the step trains nothing."""
        return self.resting.get(majority_category(batch), 0) > 0

    def note(self, batch: list[Example], prompts: list[int], selection: Selection, context: torch.Tensor) -> None:
        """A rewarded decision since the last check, on the category of its prompts."""
        self.decisions.append((majority_category([batch[p] for p in prompts]), selection, context))

    def judge(self, accuracy: dict[str, float]) -> Verdict:
        """Keep or undo the steps since the last check, whose policy scored `accuracy`; rest and penalise."""
        if self.best_accuracy is None:
            raise RuntimeError("DevRollback.judge before a baseline: call `baseline` on the starting policy")
        fallen = fallen_categories(self.best_accuracy, accuracy, self.max_drop)
        self.resting = {c: n - 1 for c, n in self.resting.items() if n > 1}
        verdict = Verdict(accuracy, fallen)
        if fallen:
            self.rollbacks += 1
            self.resting.update({c: self.cooldown for c in fallen if self.cooldown > 0})
            if self.penalty is not None:
                verdict.penalised = [(s, ctx) for category, s, ctx in self.decisions if category in fallen]
        else:
            self.best_accuracy = {c: max(v, accuracy.get(c, v)) for c, v in self.best_accuracy.items()}
        self.decisions = []
        self._count(verdict)
        return verdict

    def _count(self, verdict: Verdict) -> None:
        name = {c: f"/{c}" if c else "" for c in verdict.accuracy}
        counts = {"guard/checks": 1.0, "guard/rolled_back": float(verdict.rolled_back),
                  "guard/penalised": float(len(verdict.penalised)),
                  **{f"guard/fell{name[c]}": float(c in verdict.fallen) for c in verdict.accuracy}}
        for key, value in counts.items():
            self.tally[key] = self.tally.get(key, 0.0) + value
        self.tally.update({f"dev/accuracy{name[c]}": v for c, v in verdict.accuracy.items()})  # the last check's

    def iteration_metrics(self) -> dict[str, float]:
        """This iteration's record, then reset: `guard/checks`, `guard/rolled_back` (undone checks),
        `guard/fell/<category>`, `guard/penalised` (summed over its checks), `guard/rollbacks` (the run's so
        far) and `dev/accuracy/<category>` at its last check (`dev/accuracy` for a task without categories)."""
        metrics, self.tally = {**self.tally, "guard/rollbacks": float(self.rollbacks)}, {}
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {"best_accuracy": self.best_accuracy, "resting": dict(self.resting), "rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_accuracy = state["best_accuracy"]
        self.resting, self.rollbacks = dict(state["resting"]), int(state["rollbacks"])
