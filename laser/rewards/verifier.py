"""The programmatic oracle: 1 for a correct final answer, 0 otherwise. Needs gold answers."""

from __future__ import annotations

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch


class VerifierRM(RewardModel):
    """Scores a response 1.0 when `task.is_correct(response, example)` holds, else 0.0.

    It reads the gold answer, so it is an upper bound (`rm_pool=oracle`), or, wrapped in `NoisyRM`,
    the honest core of the tiny task's RMs of known, per-category quality.

    Args:
        partial_credit_for_format: added to a wrong response from which the task can still extract
            an answer, so "well-formed but wrong" ranks above "no answer at all". 0 turns this off.
    """

    text_only = False  # reads the task and the gold answer: cannot be served by a remote RM server

    def __init__(self, partial_credit_for_format: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= partial_credit_for_format <= 1.0:
            raise LaserConfigError(
                f"VerifierRM partial_credit_for_format={partial_credit_for_format} must be in [0, 1]"
            )
        self.partial_credit_for_format = float(partial_credit_for_format)

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """1.0 per correct response, `partial_credit_for_format` per wrong-but-extractable one, else 0."""
        task = batch.task
        if task is None:
            raise ValueError(
                f"VerifierRM {self.name!r} needs the task to grade answers: ScoringBatch.task is None"
            )
        scores = []
        for response, example in zip(batch.responses, batch.examples, strict=True):
            if task.is_correct(response, example):
                scores.append(1.0)
            elif self.partial_credit_for_format and task.extract_answer(response) is not None:
                scores.append(self.partial_credit_for_format)
            else:
                scores.append(0.0)
        return torch.tensor(scores, dtype=torch.float32)
