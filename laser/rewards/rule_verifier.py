"""A verifier that applies one arithmetic category's rule to every question: how a judge built for one kind
of prompt scores another (the `category_judges_conflicting` pool)."""

from __future__ import annotations

import dataclasses

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.tasks.arithmetic import _TWO_OPERAND_QUESTIONS, CATEGORIES


class RuleVerifierRM(RewardModel):
    """Scores 1.0 when the response is right *by `rule`'s answer* for the question's operands, else 0.0.

    On its own category this is the exact verifier. On another category it is a judge applying its own
    criterion where it does not belong, a systematic preference rather than noise: the maximum rule on
    "Which is smaller, 37 or 52?" prefers "52", the minimum rule prefers "37", the comparison rule
    prefers "yes"/"no" to any number. Averaged in an ensemble such preferences do not cancel as noise
    does; they conflict. Questions the rule has no answer for (parity, one operand; or a parity rule on
    two operands) score 0.0 for every response, which ranks nothing.
    """

    text_only = False  # reads the example's operands

    def __init__(self, rule: str) -> None:
        super().__init__()
        if rule not in CATEGORIES:
            raise LaserConfigError(f"RuleVerifierRM rule={rule!r}; choose one of {list(CATEGORIES)}")
        self.rule = rule

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        if batch.task is None:
            raise ValueError(f"RuleVerifierRM {self.name!r} needs the task to grade answers: ScoringBatch.task is None")
        scores = []
        for response, example in zip(batch.responses, batch.examples, strict=True):
            judged = self.as_rule(example)
            scores.append(float(judged is not None and batch.task.is_correct(response, judged)))
        return torch.tensor(scores, dtype=torch.float32)

    def as_rule(self, example):
        """The example as the rule sees it: same question, the rule's answer and category (None: no answer)."""
        if example.category == self.rule:
            return example
        if self.rule == "parity" or "a" not in example.meta:
            return None
        _, answer = _TWO_OPERAND_QUESTIONS[self.rule](example.meta["a"], example.meta["b"])
        return dataclasses.replace(example, answer=answer, category=self.rule)
