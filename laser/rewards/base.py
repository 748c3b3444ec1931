"""What every reward model (RM) provides: a batch of (prompt, response) pairs in, one score each out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from laser.tasks.base import Example, Task


@dataclass
class ScoringBatch:
    """Responses to score, flattened: item i is `responses[i]` answering `prompts[i]` for `examples[i]`.

    `prompts` are the texts the policy was given (the task's prompt format). `task` lets programmatic
    RMs grade answers (the verifier) and category-aware RMs look up categories; `rm_prompts()` gives
    the question as a person would ask it, for RMs that format their own input (a chat template).
    """

    prompts: list[str]
    responses: list[str]
    examples: list[Example]
    task: Task | None = None

    def __len__(self) -> int:
        return len(self.responses)

    def rm_prompts(self) -> list[str]:
        """Each item's question without the policy's prompt format: `task.rm_prompt(example)`, or
        `example.question` when there is no task (a judge's or a remote server's batch, whose examples
        hold the question the caller sent)."""
        if self.task is None:
            return [example.question for example in self.examples]
        return [self.task.rm_prompt(example) for example in self.examples]


class RewardModel(ABC):
    """A scorer of responses. Higher is better. Heavy weights load lazily on the first `score` call.

    Class attributes a subclass may override:
        tokens_processed: input tokens this RM has run through a model so far (its compute cost).
            Programmatic RMs keep 0; the HF base adds each forward pass's non-pad tokens.
        text_only: whether the score depends on nothing but the prompt and response texts. RMs that
            read the task or the examples (gold answers, categories, passages) set it False: a remote
            RM server receives only texts, so it refuses to serve them.
    """

    tokens_processed: int = 0
    text_only: bool = True

    def __init__(self, name: str = "") -> None:
        # Usually left empty: `RewardModelPool` names each RM after its config key.
        self.name = name

    @abstractmethod
    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One float score per response, shape [len(batch)], on the CPU."""

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise `LaserConfigError` now for a cheap-to-detect mistake (e.g. a local model folder that
        does not exist) without loading anything. The pool calls it when it is built."""

    def to(self, device: str | torch.device) -> RewardModel:  # noqa: B027 - optional hook
        """Move weights to a device (no-op for RMs without weights)."""
        return self
