"""Answer metrics for open-ended QA, as LongBench computes them (pure functions, no state).

`normalize_answer` and `qa_f1_score` follow LongBench's `metrics.py` (itself SQuAD's evaluation
script): lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace, then token F1.
An instance's score is the best F1 over its gold answers (`best_f1`). `consensus_f1` is the
label-free agreement score that `laser.bestofn` uses as its bandit reward.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, remove punctuation, remove articles (a, an, the), collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_f1(prediction_tokens: Sequence[str], ground_truth_tokens: Sequence[str]) -> float:
    """F1 of two token bags (multiset overlap); 0 when they share no token (or either is empty)."""
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_f1_score(prediction: str, ground_truth: str) -> float:
    """LongBench's `qa_f1_score`: token F1 between the normalised prediction and gold answer."""
    return token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def best_f1(prediction: str, answers: Sequence[str]) -> float:
    """The best `qa_f1_score` over all gold answers (LongBench scores an instance this way); 0 without golds."""
    return max((qa_f1_score(prediction, gold) for gold in answers), default=0.0)


def exact_match(prediction: str, answers: Sequence[str]) -> bool:
    """True when the normalised prediction equals some normalised gold answer."""
    normalised = normalize_answer(prediction)
    return any(normalised == normalize_answer(gold) for gold in answers)


def consensus_f1(answers: Sequence[str], index: int) -> float:
    """Mean `qa_f1_score` between `answers[index]` and each of the other answers (an MBR-style
    agreement score that needs no labels); 0 when there is no other answer."""
    others = [answer for j, answer in enumerate(answers) if j != index]
    if not others:
        return 0.0
    return sum(qa_f1_score(answers[index], other) for other in others) / len(others)
