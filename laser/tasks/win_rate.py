"""The instruction-following metric: the win rate of responses over references under a pairwise `Judge`.

A judge answers `prefer(prompts, responses_a, responses_b)` with one number per item: 1.0 when
response a is better, 0.0 when b is, 0.5 for a tie (judges built from RMs and LMs:
`laser.evaluation.judges`). `win_rate` asks in both orders and averages, which cancels a judge's
preference for the first (or second) position. The references are AlpacaEval `model_outputs.json`
rows (`read_alpaca_eval_outputs`).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from laser.errors import LaserConfigError


class Judge(ABC):
    """Compares two responses per prompt: 1.0 = a better, 0.0 = b better, 0.5 = tie."""

    name: str = "judge"

    @abstractmethod
    def prefer(self, prompts: list[str], responses_a: list[str], responses_b: list[str]) -> list[float]:
        """One preference in {0.0, 0.5, 1.0} (or in between, for a soft judge) per item."""

    def describe(self) -> str:
        """The judge as reports name it, e.g. `rm:<model>` (by default its `name`)."""
        return self.name


@dataclass(frozen=True)
class WinRate:
    """The win rate of A over B: `rate` in [0, 1] (ties count half), its standard error `se`
    (sample std of the per-item scores / sqrt(n); NaN for n < 2), and the per-item `scores`."""

    rate: float
    se: float
    n: int
    wins: int
    ties: int
    losses: int
    scores: tuple[float, ...] = field(default=(), repr=False)


def win_rate(prompts: list[str], outputs_a: list[str], outputs_b: list[str], judge: Judge,
             both_orders: bool = True) -> WinRate:
    """Judge A against B per prompt; with `both_orders`, score p = (prefer(a, b) + 1 - prefer(b, a)) / 2."""
    if not len(prompts) == len(outputs_a) == len(outputs_b):
        raise ValueError(f"win_rate inputs differ in length: {len(prompts)} prompts, {len(outputs_a)} "
                         f"outputs a, {len(outputs_b)} outputs b")
    forward = _checked(judge.prefer(list(prompts), list(outputs_a), list(outputs_b)), len(prompts))
    if both_orders:
        backward = _checked(judge.prefer(list(prompts), list(outputs_b), list(outputs_a)), len(prompts))
        scores = [(f + 1.0 - b) / 2.0 for f, b in zip(forward, backward, strict=True)]
    else:
        scores = forward
    n = len(scores)
    rate = sum(scores) / n if n else math.nan
    se = math.sqrt(sum((s - rate) ** 2 for s in scores) / (n - 1) / n) if n > 1 else math.nan
    return WinRate(rate=rate, se=se, n=n, wins=sum(s > 0.5 for s in scores), ties=sum(s == 0.5 for s in scores),
                   losses=sum(s < 0.5 for s in scores), scores=tuple(scores))


def _checked(preferences: list[float], n: int) -> list[float]:
    values = [float(p) for p in preferences]
    if len(values) != n or any(not 0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"a judge must return {n} preferences in [0, 1]; got {len(values)}: {values[:5]}")
    return values


def read_alpaca_eval_outputs(path: str | Path) -> list[dict]:
    """The rows of an AlpacaEval `model_outputs.json` (a JSON list of objects with string
    "instruction" and "output"); one-line `LaserConfigError` for a missing or malformed file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LaserConfigError(f"outputs file {str(path)!r} does not exist")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LaserConfigError(f"outputs file {str(path)!r} is not valid JSON: {error}") from error
    if not isinstance(rows, list):
        raise LaserConfigError(f"outputs file {str(path)!r} must hold a JSON list of AlpacaEval rows")
    for number, row in enumerate(rows, start=1):
        if not (isinstance(row, dict) and isinstance(row.get("instruction"), str) and isinstance(row.get("output"), str)):
            raise LaserConfigError(f"outputs file {str(path)!r}: row {number} needs string 'instruction' and 'output'")
    return rows
