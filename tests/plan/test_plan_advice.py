"""Finding the largest knob value that fits (laser/plan/advice.py), on costs computed by hand."""

from __future__ import annotations

from laser.plan.advice import largest_fitting


def counted(cost):
    calls = []

    def wrapped(x: int) -> int:
        calls.append(x)
        return cost(x)

    return wrapped, calls


def test_a_linear_cost_is_solved_in_a_few_probes():
    cost, calls = counted(lambda m: 10 + 3 * m)  # 3 per sequence on 10 of weights
    assert largest_fitting(cost, 1, 176, limit=100) == 30  # 10 + 3 * 30 = 100
    assert len(set(calls)) <= 5


def test_a_curved_cost_still_converges_to_the_exact_answer():
    assert largest_fitting(lambda x: x * x, 1, 1000, limit=5000) == 70  # 70^2 = 4900, 71^2 = 5041


def test_everything_fits_or_nothing_does():
    assert largest_fitting(lambda x: x, 1, 50, limit=100) == 50
    assert largest_fitting(lambda x: 100 + x, 1, 50, limit=100) is None


def test_a_step_in_the_cost_is_found():
    assert largest_fitting(lambda x: 0 if x <= 17 else 10**9, 1, 480, limit=5) == 17
