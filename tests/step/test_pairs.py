"""Preference pairs from RM scores: hand cases for each rule in the docstring, plus property tests."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from laser.step.pairs import build_preference_pairs, mean_chosen_score

NAN, INF = float("nan"), float("inf")


def s(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_mean_chosen_score_counts_each_preferred_response_once():
    scores = {0: s([3.0, 1.0, 2.0], [0.5, 4.0, 1.0]), 1: s([9.0, 9.0, 9.0], [9.0, 9.0, 9.0])}
    pairs = [(0, 0, 1), (0, 0, 2), (1, 1, 0)]  # prompt 0's top (3.0) twice, prompt 1's top (4.0) once
    assert mean_chosen_score(scores, [0], pairs) == pytest.approx(3.5)
    assert mean_chosen_score(scores, [1], pairs) == 9.0  # the arm asked for, not another
    assert mean_chosen_score(scores, [0, 1], pairs) is None  # an ensemble chose no one RM
    assert mean_chosen_score(scores, [0], []) is None


def test_top_against_lowest_first():
    scores = s([0.5, 0.9, 0.1, 0.3])
    assert build_preference_pairs(scores, 1) == [(0, 1, 2)]
    assert build_preference_pairs(scores, 3) == [(0, 1, 2), (0, 1, 3), (0, 1, 0)]


def test_ties_with_the_top_are_skipped():
    scores = s([1.0, 0.2, 1.0, 0.5])
    # Chosen is index 0 (lowest index among the tied tops); index 2 is never a rejected.
    assert build_preference_pairs(scores, 5) == [(0, 0, 1), (0, 0, 3)]


def test_all_equal_row_gives_no_pairs():
    assert build_preference_pairs(s([0.7, 0.7, 0.7]), 4) == []
    assert build_preference_pairs(s([0.7, 0.7], [1.0, 0.0]), 4) == [(1, 0, 1)]


def test_pairs_never_mix_prompts():
    scores = s([0.0, 1.0, 2.0], [5.0, 4.0, 3.0], [1.0, 1.0, 0.0])
    pairs = build_preference_pairs(scores, 2)
    assert pairs == [(0, 2, 0), (0, 2, 1), (1, 0, 2), (1, 0, 1), (2, 0, 2)]
    for p, c, r in pairs:
        assert 0 <= c < 3 and 0 <= r < 3
        assert scores[p, c] > scores[p, r]


def test_max_pairs_per_prompt_is_honoured():
    scores = s([5.0, 1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0, 4.0])
    pairs = build_preference_pairs(scores, 2)
    assert pairs == [(0, 0, 1), (0, 0, 2), (1, 4, 0), (1, 4, 1)]


def test_lowest_index_chosen_among_equal_tops():
    assert build_preference_pairs(s([0.0, 3.0, 1.0, 3.0, 3.0]), 1) == [(0, 1, 0)]


def test_identical_response_text_is_skipped():
    scores = s([0.9, 0.1, 0.5, 0.3])
    responses = [["42", "42", "41", "x"]]
    # Lowest first would be index 1, but its text equals the chosen one's.
    assert build_preference_pairs(scores, 1, responses=responses) == [(0, 0, 3)]
    assert build_preference_pairs(scores, 5, responses=responses) == [(0, 0, 3), (0, 0, 2)]
    token_responses = [[(1, 2), (1, 2), (1, 3), (1, 2)]]
    assert build_preference_pairs(scores, 5, responses=token_responses) == [(0, 0, 2)]


def test_non_finite_scores_are_never_paired():
    scores = s([NAN, 0.5, 0.1], [INF, 0.2, 0.3], [-INF, 0.2, NAN], [NAN, NAN, NAN], [NAN, 1.0, INF])
    pairs = build_preference_pairs(scores, 5)
    # Row 1: +inf is not the top; row 2: only one finite score; rows 3 and 4: nothing to pair.
    assert pairs == [(0, 1, 2), (1, 2, 1)]


def test_min_margin():
    scores = s([1.0, 0.8, 0.5, 0.0])
    assert build_preference_pairs(scores, 5, min_margin=0.3) == [(0, 0, 3), (0, 0, 2)]
    assert build_preference_pairs(scores, 5, min_margin=0.5) == [(0, 0, 3)]  # margin 0.5 is not > 0.5
    assert build_preference_pairs(scores, 5, min_margin=2.0) == []


def test_single_response_or_no_prompts_give_no_pairs():
    assert build_preference_pairs(s([1.0], [2.0]), 1) == []
    assert build_preference_pairs(torch.zeros(0, 4), 1) == []


@pytest.mark.parametrize("shape", [(4,), (2, 3, 1), ()])
def test_bad_shape_raises(shape):
    with pytest.raises(ValueError, match="num_prompts"):
        build_preference_pairs(torch.zeros(shape), 1)


@pytest.mark.parametrize("max_pairs", [0, -1])
def test_bad_max_pairs_raises(max_pairs):
    with pytest.raises(ValueError, match="max_pairs_per_prompt"):
        build_preference_pairs(s([1.0, 0.0]), max_pairs)


score = st.one_of(
    st.floats(-5, 5, allow_nan=False, width=32),
    st.sampled_from([0.0, 1.0, NAN, INF, -INF]),  # ties and non-finite values on purpose
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(1, 4).flatmap(
        lambda n: st.lists(st.lists(score, min_size=n, max_size=n), min_size=1, max_size=5)
    ),
    max_pairs=st.integers(1, 4),
)
def test_pairs_respect_scores_property(rows, max_pairs):
    scores = torch.tensor(rows, dtype=torch.float32)
    pairs = build_preference_pairs(scores, max_pairs)
    per_prompt = {}
    for p, c, r in pairs:
        row = scores[p].tolist()
        finite = [v for v in row if math.isfinite(v)]
        assert math.isfinite(row[c]) and math.isfinite(row[r])
        assert row[c] > row[r]
        assert row[c] == max(finite)
        assert c == row.index(max(finite))
        per_prompt.setdefault(p, set()).add(r)
    for p, rejected in per_prompt.items():
        assert len(rejected) <= max_pairs
        assert len(rejected) == len([pr for pr in pairs if pr[0] == p])  # no duplicate pairs


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(st.lists(st.one_of(finite, st.just(math.nan)), min_size=2, max_size=6), min_size=1, max_size=5)
       .filter(lambda rows: len({len(r) for r in rows}) == 1), st.integers(1, 4))
def test_pairs_always_prefer_a_strictly_higher_score_within_one_prompt(rows, max_pairs):
    scores = torch.tensor(rows, dtype=torch.float64)
    pairs = build_preference_pairs(scores, max_pairs)
    for prompt, chosen, rejected in pairs:
        assert scores[prompt, chosen] > scores[prompt, rejected]
    for prompt in range(len(rows)):
        assert sum(p == prompt for p, _, _ in pairs) <= max_pairs
