"""The win rate under a pairwise judge (`laser.tasks.win_rate`): by hand, and both orders cancel position bias."""

from __future__ import annotations

import math

import pytest

from laser.evaluation.judges import LengthJudge
from laser.tasks.win_rate import Judge, win_rate


class FirstPositionJudge(Judge):
    """Always prefers whatever is shown first: pure position bias."""

    def prefer(self, prompts, responses_a, responses_b):
        return [1.0] * len(prompts)


def test_length_judge_win_rates_by_hand(tmp_path):
    prompts = ["p1", "p2", "p3"]
    a, b = ["long answer", "same", "x"], ["short", "same", "much longer answer"]  # A longer, tie, B longer
    result = win_rate(prompts, a, b, LengthJudge())
    assert (result.rate, result.n, result.wins, result.ties, result.losses) == (0.5, 3, 1, 1, 1)
    assert result.se == pytest.approx(0.5 / math.sqrt(3))  # std of (1, 0.5, 0) is 0.5
    # Less symmetric: A longer twice, two ties -> (1 + 1 + 0.5 + 0.5) / 4 = 0.75.
    a, b = ["aaaa", "aaaa", "aa", "aa"], ["a", "a", "bb", "bb"]
    result = win_rate(["p"] * 4, a, b, LengthJudge())
    assert (result.rate, result.wins, result.ties, result.losses) == (0.75, 2, 2, 0)
    assert result.se == pytest.approx(math.sqrt((2 * 0.25**2 + 2 * 0.25**2) / 3) / 2)  # 0.1443
    assert win_rate(["p"] * 4, b, a, LengthJudge()).rate == 0.25  # swapped: 1 - 0.75


def test_both_orders_cancel_position_bias():
    prompts, a, b = ["p", "q"], ["good", "short"], ["bad answer", "much longer"]
    assert win_rate(prompts, a, b, FirstPositionJudge(), both_orders=False).rate == 1.0
    both = win_rate(prompts, a, b, FirstPositionJudge())
    assert (both.rate, both.ties, both.se) == (0.5, 2, 0.0)
