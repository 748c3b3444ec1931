"""Programmatic RMs for long-context QA: how much of an answer is found in the passage or the question.

Cheap (set lookups on normalised tokens), label-free, and of uneven quality, which is what a bandit
needs to have something to learn offline:

- `PassageOverlapRM` (grounding): extractive QA answers are spans of the passage, so an answer whose
  words all occur there is more plausible than one with invented words. It cannot tell the right span
  from a wrong one, hence the small length penalty (F1 punishes long answers).
- `QuestionOverlapRM` (echo): rewards answers made of the question's words. Right for comparison
  questions ("Which is older, X or Y?": the answer is X or Y), wrong for bridge questions, whose answer
  is rarely in the question: useful on some contexts, harmful on others.

Both read the raw passage / question from `Example.meta` (set by `LongContextQA`) and fall back to
the prompt text when an example has none.
"""

from __future__ import annotations

import torch

from laser.errors import LaserConfigError
from laser.rewards.base import RewardModel, ScoringBatch
from laser.tasks.qa_metrics import normalize_answer


def grounded_fraction(answer: str, reference_tokens: set[str]) -> float:
    """Fraction of the answer's normalised tokens that occur in `reference_tokens`; 0 for an empty answer."""
    tokens = normalize_answer(answer).split()
    if not tokens:
        return 0.0
    return sum(token in reference_tokens for token in tokens) / len(tokens)


class _TokenOverlapRM(RewardModel):
    """score = grounded_fraction(answer, reference) - length_penalty * (number of answer tokens)."""

    meta_key = ""
    text_only = False  # reads the passage / question from Example.meta, which a remote request lacks

    def __init__(self, length_penalty: float = 0.0) -> None:
        super().__init__()
        if not isinstance(length_penalty, int | float) or length_penalty < 0:
            raise LaserConfigError(f"{type(self).__name__} length_penalty={length_penalty!r} must be a number >= 0")
        self.length_penalty = float(length_penalty)

    def score(self, batch: ScoringBatch) -> torch.Tensor:
        """One score per response (the n samples of a prompt share one tokenised reference)."""
        references: dict[int, set[str]] = {}
        scores = []
        for prompt, response, example in zip(batch.prompts, batch.responses, batch.examples, strict=True):
            text = example.meta.get(self.meta_key) or prompt
            if id(text) not in references:
                references[id(text)] = set(normalize_answer(text).split())
            length = len(normalize_answer(response).split())
            scores.append(grounded_fraction(response, references[id(text)]) - self.length_penalty * length)
        return torch.tensor(scores, dtype=torch.float32)


class PassageOverlapRM(_TokenOverlapRM):
    """Grounding: the fraction of the answer's normalised tokens found in the passage, minus
    `length_penalty` per answer token (so a copied sentence does not beat a short grounded span)."""

    meta_key = "passage"

    def __init__(self, length_penalty: float = 0.01) -> None:
        super().__init__(length_penalty)


class QuestionOverlapRM(_TokenOverlapRM):
    """Echo: the fraction of the answer's normalised tokens found in the question, minus
    `length_penalty` per token. Good on comparison questions, misleading on bridge questions."""

    meta_key = "question"

    def __init__(self, length_penalty: float = 0.01) -> None:
        super().__init__(length_penalty)
