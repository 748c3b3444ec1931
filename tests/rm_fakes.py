"""Stand-ins the RM and step tests share: a task whose answer follows 'answer:', an RM that counts what it
is asked, an RM that misbehaves on cue, and a scoring batch of such examples (import with
`from rm_fakes import ...`: tests/ is on the path, as for conftest)."""

from __future__ import annotations

import re
import threading

import torch

from laser.errors import LaserConfigError
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
        self.asked: list[tuple[str, str, str]] = []  # (prompt, response, example uid) of every item scored
        self.drop_last = drop_last

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        self.items_seen += len(batch)
        self.batches_seen += 1
        self.asked += [(p, r, e.uid) for p, r, e in zip(batch.prompts, batch.responses, batch.examples, strict=True)]
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


class ScriptedRM(RewardModel):
    """Does, on its i-th call, what `script[i]` says (then "ok" forever): "ok", "raise", "short",
    "nan", "hang" (wait on `release`, at most 10 s), "config"."""

    def __init__(self, *script: str) -> None:
        super().__init__()
        self.script, self.calls, self.moves = list(script), 0, []
        self.release = threading.Event()

    def to(self, device):
        self.moves.append(str(device))
        return self

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        action = self.script[self.calls] if self.calls < len(self.script) else "ok"
        self.calls += 1
        self.tokens_processed += 10 * len(batch)
        if action == "raise":
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")
        if action == "config":
            raise LaserConfigError("model path '/nowhere' does not exist")
        if action == "hang":
            self.release.wait(10)  # bounded: a test failure never leaves a thread for long
        scores = torch.arange(len(batch), dtype=torch.float32)
        if action == "short":
            return scores[:-1]
        if action == "nan":
            scores[0] = float("nan")
        return scores
