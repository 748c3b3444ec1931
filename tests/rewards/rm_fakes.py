"""Stand-ins the RM tests share: a task whose answer follows 'answer:', an RM that counts what it is
asked, and a scoring batch of such examples (import with `from rm_fakes import ...`)."""

from __future__ import annotations

import re

import torch

from laser.rewards.base import RewardModel, ScoringBatch
from laser.tasks.base import Example, Task


class AnswerTask(Task):
    """A fake task: the answer follows 'answer:'."""

    categories = ("addition", "comparison")

    def train_examples(self) -> list[Example]:
        return []

    def test_examples(self) -> list[Example]:
        return []

    def format_prompt(self, example: Example) -> str:
        return example.question

    def extract_answer(self, response: str) -> str | None:
        match = re.search(r"answer:\s*(\S+)", response)
        return match.group(1) if match else None


class CountingRM(RewardModel):
    """Scores example uid + 2 (outside [0, 1], so a Uniform replacement is recognisable) and records
    what it was asked; `drop_last` makes it return one score too few."""

    def __init__(self, drop_last: bool = False) -> None:
        super().__init__()
        self.items_seen, self.batches_seen, self.moved_to = 0, 0, []
        self.drop_last = drop_last

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        self.items_seen += len(batch)
        self.batches_seen += 1
        scores = [int(e.uid) + 2.0 for e in batch.examples]
        return torch.tensor(scores[:-1] if self.drop_last else scores, dtype=torch.float64)

    def to(self, device):
        self.moved_to.append(str(device))
        return self


def make_batch(categories: list[str], responses: list[str] | None = None) -> ScoringBatch:
    examples = [
        Example(uid=str(i), question=f"q{i}", answer="5", category=c) for i, c in enumerate(categories)
    ]
    responses = responses or ["answer: 5"] * len(examples)
    return ScoringBatch([e.question for e in examples], responses, examples, AnswerTask())
