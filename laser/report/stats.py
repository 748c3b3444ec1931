"""Summaries over seeds: mean, sample std and a Student-t 95% confidence interval (no scipy)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

# Two-sided 95% Student-t quantiles t(0.975, df) for small df, where the normal approximation fails.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
         18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
         26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (two-sided 95% intervals).

    A table up to 30; beyond, the Cornish-Fisher expansion around the normal quantile (error < 1e-3).
    """
    if df < 1:
        raise ValueError(f"df must be >= 1, got {df}")
    if df in _T975:
        return _T975[df]
    z = statistics.NormalDist().inv_cdf(0.975)
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


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
