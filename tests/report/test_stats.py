"""`laser.report.stats`: the t quantile against printed tables and the mean ± std [95% CI] against a
textbook case (Student's 1908 sleep data). Pure functions only: no conftest, so this file also runs
where only scipy and pytest are installed (the dependency-floor check)."""

from __future__ import annotations

import math

import pytest

from laser.report.stats import summarise, t_quantile_975

# Student (1908), "The probable error of a mean", the Cushny-Peebles sleep data: extra hours of sleep of
# 10 patients under two drugs. R's `t.test(extra ~ group, data = sleep, paired = TRUE)` prints
# mean difference 1.58, 95% CI [0.7001142, 2.4598858], t = 4.0621, df = 9, p-value = 0.002833.
SLEEP_DRUG_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_DRUG_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
SLEEP_DIFFERENCES = [b - a for a, b in zip(SLEEP_DRUG_1, SLEEP_DRUG_2, strict=True)]
SLEEP_CI = (0.7001142, 2.4598858)  # R prints 7 decimals


def test_t_quantile_matches_printed_tables():
    # The two-sided 95% column of a printed t table (3 decimals), and the normal limit.
    for df, printed in [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042), (120, 1.980), (10**6, 1.960)]:
        assert t_quantile_975(df) == pytest.approx(printed, abs=5e-4)
    with pytest.raises(ValueError, match="df must be >= 1"):
        t_quantile_975(0)


def test_mean_std_and_interval_of_the_sleep_data_match_the_textbook():
    s = summarise(SLEEP_DIFFERENCES)
    assert s.n == 10 and s.mean == pytest.approx(1.58, abs=1e-12)
    assert s.std == pytest.approx(1.229995, abs=1e-6)
    assert (s.ci_low, s.ci_high) == (pytest.approx(SLEEP_CI[0], abs=1e-6), pytest.approx(SLEEP_CI[1], abs=1e-6))


def test_three_seeds_by_hand():
    s = summarise([0.5, 0.6, 0.7])  # std 0.1; t(0.975, 2) = 4.302653 (to 6 decimals)
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert (s.ci_low, s.ci_high) == (pytest.approx(0.6 - half, abs=1e-6), pytest.approx(0.6 + half, abs=1e-6))


def test_summary_of_one_value_has_no_spread():
    one = summarise([0.5])
    assert one.mean == 0.5 and one.n == 1 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert summarise([]).n == 0 and math.isnan(summarise([]).mean)
