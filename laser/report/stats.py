"""Summaries over seeds: mean, sample std and a Student-t 95% confidence interval (scipy's t quantile)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95  # every interval of the report


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (two-sided 95% intervals)."""
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


@dataclass(frozen=True)
class Summary:
    """Mean, sample std and 95% t-interval of `n` values (std and interval are NaN when n < 2)."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n: int


def summarise(values: Iterable[float]) -> Summary:
    """Summarise independent samples (here: one value per seed)."""
    data = [float(v) for v in values]
    if not data:
        return Summary(math.nan, math.nan, math.nan, math.nan, 0)
    mean = statistics.fmean(data)
    if len(data) < 2:
        return Summary(mean, math.nan, math.nan, math.nan, 1)
    std = statistics.stdev(data)
    half = t_quantile_975(len(data) - 1) * std / math.sqrt(len(data))
    return Summary(mean, std, mean - half, mean + half, len(data))


def is_nan(value: object) -> bool:
    """A float NaN (a metric a job did not produce)."""
    return isinstance(value, float) and math.isnan(value)
