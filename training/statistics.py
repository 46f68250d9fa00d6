"""Figures over seeds: their spread, and the 95 % intervals that the report's verdicts rest on.

One seed tells nothing about how much a figure would move with another, so every comparison in the
report goes through an interval. The interval of a difference of means is Welch's (unequal variances,
Welch-Satterthwaite degrees of freedom): it excludes 0 exactly when a two-sided Welch t-test at 5 %
rejects equal means.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Spread:
    """Count, mean, sample standard deviation and range of one figure over seeds."""

    count: int
    mean: float
    sd: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        array = np.asarray(list(values), dtype=float)
        if array.size == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        sd = float(np.std(array, ddof=1)) if array.size > 1 else math.nan
        return cls(int(array.size), float(np.mean(array)), sd, float(np.min(array)), float(np.max(array)))


@dataclass(frozen=True)
class Interval:
    """A mean (or a difference of means) with its 95 % confidence interval."""

    estimate: float
    low: float
    high: float


def _interval(estimate: float, variance_of_estimate: float, degrees_of_freedom: float) -> Interval:
    """Student-t interval; a zero variance (every seed equal) leaves the point itself."""
    if variance_of_estimate == 0:
        return Interval(estimate, estimate, estimate)
    quantile = float(stats.t.ppf((1 + CONFIDENCE) / 2, degrees_of_freedom))
    half_width = quantile * math.sqrt(variance_of_estimate)
    return Interval(estimate, estimate - half_width, estimate + half_width)


def mean_interval(values: Sequence[float]) -> Interval | None:
    """The one-sample t interval of the mean; None below two values (no spread to judge by)."""
    if len(values) < 2:
        return None
    spread = Spread.of(values)
    return _interval(spread.mean, spread.sd**2 / spread.count, spread.count - 1)


def difference_interval(first: Sequence[float], second: Sequence[float]) -> Interval | None:
    """Welch's interval of mean(first) - mean(second); None when either side has fewer than two values."""
    if len(first) < 2 or len(second) < 2:
        return None
    a, b = Spread.of(first), Spread.of(second)
    share_a, share_b = a.sd**2 / a.count, b.sd**2 / b.count
    variance = share_a + share_b
    degrees_of_freedom = (
        variance**2 / (share_a**2 / (a.count - 1) + share_b**2 / (b.count - 1)) if variance else math.inf
    )
    return _interval(a.mean - b.mean, variance, degrees_of_freedom)


@dataclass(frozen=True)
class Unit:
    """How a figure is printed: `scale` turns fractions into percent, `suffix` names the unit."""

    scale: float = 1.0
    digits: int = 1
    suffix: str = ""

    def value(self, value: float, signed: bool = False) -> str:
        return f"{self.scale * value:{'+' if signed else ''}.{self.digits}f}"

    def show(self, value: float) -> str:
        """The value with its unit."""
        return f"{self.value(value)}{self.suffix}"

    def spread(self, spread: Spread) -> str:
        """'mean ± sd (min-max)', the mean alone for one seed, a dash without any."""
        if spread.count == 0:
            return "—"
        if spread.count == 1:
            return self.show(spread.mean)
        return (
            f"{self.value(spread.mean)} ± {self.value(spread.sd)}{self.suffix} "
            f"({self.value(spread.low)}-{self.value(spread.high)})"
        )

    def interval(self, interval: Interval, signed: bool = False) -> str:
        return f"[{self.value(interval.low, signed)}, {self.value(interval.high, signed)}]{self.suffix}"


PERCENT = Unit(scale=100, digits=1, suffix="%")
