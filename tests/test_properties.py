"""Property-based tests (hypothesis) on the pure maths: normaliser, bandit updates, pairs, extraction."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from laser.selection.base import Selection
from laser.selection.linucb import LinUCB
from laser.selection.normaliser import QuantileNormaliser
from laser.selection.ridge import sherman_morrison_update
from laser.step.pairs import build_preference_pairs
from laser.tasks.arithmetic import Arithmetic
from laser.tasks.extraction import extract_last_number, extract_strict_gsm8k, extract_yes_no, normalise_number

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(finite, min_size=1, max_size=60))
def test_normalised_rewards_stay_in_the_unit_interval(raws):
    normaliser = QuantileNormaliser()
    for raw in raws:
        assert 0.0 <= normaliser(raw) <= 1.0


@given(st.lists(finite, min_size=3, max_size=30), finite, finite)
def test_normaliser_is_monotone_in_the_raw_reward(history, a, b):
    """For one history, a larger raw reward never maps to a smaller normalised one."""
    low, high = sorted((a, b))
    first, second = QuantileNormaliser(), QuantileNormaliser()
    for raw in history:
        first(raw), second(raw)
    assert first(low) <= second(high) + 1e-12


vectors = st.lists(st.floats(min_value=-3, max_value=3, allow_nan=False), min_size=4, max_size=4)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(vectors, st.floats(min_value=0, max_value=1), st.integers(0, 2)), min_size=1, max_size=40))
def test_linucb_keeps_A_symmetric_positive_definite_and_its_inverse_consistent(updates):
    bandit = LinUCB(num_arms=3, alpha=0.5)
    for x, reward, arm in updates:
        context = torch.tensor(x, dtype=torch.float64)
        bandit.select(context)
        bandit.update(Selection(arms=(arm,)), context, reward)
    for k in range(3):
        A, A_inv = bandit.A[k], bandit.A_inv[k]
        assert torch.allclose(A, A.T) and torch.linalg.eigvalsh(A).min() > 0
        assert torch.allclose(A @ A_inv, torch.eye(4, dtype=torch.float64), atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(vectors)
def test_sherman_morrison_matches_a_direct_inverse(x):
    x = torch.tensor(x, dtype=torch.float64)
    A = torch.eye(4, dtype=torch.float64) * 2.0
    assert torch.allclose(sherman_morrison_update(torch.linalg.inv(A), x), torch.linalg.inv(A + torch.outer(x, x)),
                          atol=1e-9)


@given(st.lists(st.lists(st.one_of(finite, st.just(math.nan)), min_size=2, max_size=6), min_size=1, max_size=5)
       .filter(lambda rows: len({len(r) for r in rows}) == 1), st.integers(1, 4))
def test_pairs_always_prefer_a_strictly_higher_score_within_one_prompt(rows, max_pairs):
    scores = torch.tensor(rows, dtype=torch.float64)
    pairs = build_preference_pairs(scores, max_pairs)
    for prompt, chosen, rejected in pairs:
        assert scores[prompt, chosen] > scores[prompt, rejected]
    for prompt in range(len(rows)):
        assert sum(p == prompt for p, _, _ in pairs) <= max_pairs


@given(st.text(max_size=200))
def test_answer_extraction_never_raises(text):
    task = Arithmetic(num_train=4, num_test=2)
    for extract in (extract_last_number, extract_strict_gsm8k, extract_yes_no, normalise_number, task.extract_answer):
        result = extract(text)
        assert result is None or isinstance(result, str)
