"""What every task provides: examples with gold answers, a prompt format, answer checking."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from laser.errors import LaserConfigError


@dataclass(frozen=True)
class Example:
    """One prompt of a task.

    `answer` is the gold final answer as a normalised string ("68", "yes", "B");
    `target` is a full reference response used for supervised warm starts (may equal `answer`);
    `category` groups examples for per-category analysis and batching ("" when the task has none).
    """

    uid: str
    question: str
    answer: str
    target: str = ""
    category: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def strict_and_flexible_accuracy(responses: list[str], examples: list[Example],
                                 strict: Callable[[str], str | None],
                                 flexible: Callable[[str], str | None]) -> dict[str, float]:
    """`test/accuracy_strict` and `test/accuracy_flexible` as lm-evaluation-harness reports them: the
    strict extractor alone, and the strict one falling back on the flexible one."""
    pairs = list(zip(responses, examples, strict=True))
    hits_strict = sum(strict(r) == e.answer for r, e in pairs)
    hits_flexible = sum((strict(r) or flexible(r)) == e.answer for r, e in pairs)
    return {"test/accuracy_strict": hits_strict / max(len(pairs), 1),
            "test/accuracy_flexible": hits_flexible / max(len(pairs), 1)}


def choose_stop_strings(given: Sequence[str] | None, default: Sequence[str]) -> tuple[str, ...]:
    """`task.stop_strings`: null keeps the task's `default`, [] means none, else non-empty strings."""
    if given is None:
        return tuple(default)
    if isinstance(given, str) or not all(isinstance(s, str) and s for s in given):
        raise LaserConfigError(f"task.stop_strings={given!r} must be null (the task's default), [] (none) or a "
                               "list of non-empty strings")
    return tuple(given)


class Task(ABC):
    """A source of examples plus the rules to prompt and grade them.

    Subclasses load `train_examples()` / `test_examples()` (hub id or local path) and implement
    `extract_answer`; grading compares the extracted answer with `Example.answer`.
    """

    name: str = "task"
    categories: tuple[str, ...] = ()
    primary_metric: str = "test/accuracy"  # the metric reports rank methods by
    skipped_rows: int = 0  # malformed source rows skipped while loading (reported in results.json)
    # Where a response ends besides EOS: what the prompt's next block would start with (a base model goes on
    # writing one). Generation stops there and every response is cut there (laser/policy/stopping.py).
    stop_strings: tuple[str, ...] = ()

    @abstractmethod
    def train_examples(self) -> list[Example]:
        """Examples used for preference training (and warm starts)."""

    @abstractmethod
    def test_examples(self) -> list[Example]:
        """Held-out examples used for evaluation."""

    @abstractmethod
    def format_prompt(self, example: Example) -> str:
        """The text the policy is given (the policy appends its response right after it)."""

    def rm_prompt(self, example: Example) -> str:
        """The question as a person would ask it, for reward models that put it in their own chat
        template: no task scaffolding ("### Instruction:", answer-format instructions, few-shot
        examples). Default `example.question`, which already holds everything the question needs:
        MMLU's lettered choices, a long-context example's passage and instructions."""
        return example.question

    @abstractmethod
    def extract_answer(self, response: str) -> str | None:
        """The final answer in a response, normalised like `Example.answer`; None if there is none."""

    def is_correct(self, response: str, example: Example) -> bool:
        """True when the response's extracted answer equals the gold answer."""
        predicted = self.extract_answer(response)
        return predicted is not None and predicted == example.answer

    def evaluate(self, responses: list[str], examples: list[Example]) -> dict[str, float]:
        """Task metrics for responses aligned with examples. Keys use the `test/` prefix:
        `test/accuracy` always, plus `test/accuracy/<category>` when the task has categories."""
        correct = [self.is_correct(r, e) for r, e in zip(responses, examples, strict=True)]
        metrics = {"test/accuracy": sum(correct) / max(len(correct), 1)}
        for category in sorted({e.category for e in examples if e.category}):
            hits = [c for c, e in zip(correct, examples, strict=True) if e.category == category]
            metrics[f"test/accuracy/{category}"] = sum(hits) / len(hits)
        return metrics
