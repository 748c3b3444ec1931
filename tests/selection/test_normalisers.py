"""The reward normaliser (quantiles of past rewards -> [0, 1]): hand values and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from laser.selection.normalisers.quantile import QuantileNormaliser


def test_normaliser_hand_values_and_clipping() -> None:
    # History after each call (sorted), linear-interpolated 20th/80th percentiles, (raw - lo)/(hi - lo):
    #   [-1] no spread -> default 0.5; [-1,1]: lo=-0.6, hi=0.6, raw 1 -> 1.33 clipped to 1;
    #   [-1,0,1]: lo=-0.6, hi=0.6 -> 0.5; [-1,-.5,0,1]: lo=-0.7, hi=0.4, raw -0.5 -> 0.2/1.1;
    #   [-1,-.5,0,.5,1]: lo=-0.6, hi=0.6, raw 0.5 -> 1.1/1.2; then raw -10: lo=-1 -> clipped to 0.
    norm = QuantileNormaliser()
    got = [norm(r) for r in [-1.0, 1.0, 0.0, -0.5, 0.5, -10.0]]
    assert got == pytest.approx([0.5, 1.0, 0.5, 0.2 / 1.1, 1.1 / 1.2, 0.0], abs=1e-12)


def test_normaliser_constant_rewards_stay_default() -> None:
    norm = QuantileNormaliser(default=0.25)
    assert [norm(-0.69) for _ in range(4)] == [0.25] * 4


def test_normaliser_window_forgets_old_rewards() -> None:
    # window=3: [10,5,6] -> lo=5.4, hi=8.4, raw 6 -> 0.2. Unwindowed [0,10,5,6]: lo=3, hi=7.6 -> 3/4.6.
    windowed, full = QuantileNormaliser(window=3), QuantileNormaliser()
    for r in [0.0, 10.0, 5.0]:
        windowed(r), full(r)
    assert windowed(6.0) == pytest.approx(0.2) and full(6.0) == pytest.approx(3 / 4.6)
    assert windowed.state_dict() == {"history": [10.0, 5.0, 6.0]}


def test_normaliser_state_round_trip() -> None:
    a = QuantileNormaliser(window=4)
    for r in [0.3, -0.2, 0.9, 0.1, 0.4]:
        a(r)
    b = QuantileNormaliser(window=4)
    b.load_state_dict(a.state_dict())
    assert a(0.25) == b(0.25)


@pytest.mark.parametrize("low, high", [(0.8, 0.2), (0.5, 0.5), (-0.1, 0.8), (0.2, 1.5)])
def test_normaliser_rejects_bad_quantiles(low: float, high: float) -> None:
    with pytest.raises(ValueError, match=f"low_quantile={low}, high_quantile={high}"):
        QuantileNormaliser(low, high)


@pytest.mark.parametrize("raw", [float("nan"), float("inf")])
def test_normaliser_rejects_non_finite(raw: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        QuantileNormaliser()(raw)


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
