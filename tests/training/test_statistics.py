"""The intervals behind the report's verdicts agree with scipy's own t-tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from training.statistics import PERCENT, Spread, difference_interval, mean_interval


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.2, 1.0])
def test_welch_interval_is_scipys_and_excludes_zero_exactly_when_the_test_rejects(shift: float) -> None:
    generator = np.random.default_rng(7)
    first = list(generator.normal(0.8 + shift, 0.1, size=5))
    second = list(generator.normal(0.8, 0.3, size=3))
    interval = difference_interval(first, second)
    result = stats.ttest_ind(first, second, equal_var=False)
    reference = result.confidence_interval(0.95)
    assert interval is not None
    assert (interval.low, interval.high) == pytest.approx((reference.low, reference.high))
    assert (interval.low > 0 or interval.high < 0) == (result.pvalue < 0.05)


def test_mean_interval_is_the_one_sample_t_interval() -> None:
    values = [0.81, 0.84, 0.83, 0.86]
    reference = stats.ttest_1samp(values, 0).confidence_interval(0.95)
    interval = mean_interval(values)
    assert interval is not None
    assert (interval.estimate, interval.low, interval.high) == pytest.approx(
        (np.mean(values), reference.low, reference.high)
    )


def test_one_seed_has_no_interval_and_equal_seeds_a_point() -> None:
    assert mean_interval([0.8]) is None
    assert difference_interval([0.8, 0.9], [0.7]) is None
    point = difference_interval([2.0, 2.0], [1.5, 1.5, 1.5])
    assert point is not None and point.low == point.high == pytest.approx(0.5)


def test_spread_and_its_text() -> None:
    spread = Spread.of([0.84, 0.86, 0.85])
    assert (spread.count, spread.mean, spread.low, spread.high) == pytest.approx((3, 0.85, 0.84, 0.86))
    assert spread.sd == pytest.approx(np.std([0.84, 0.86, 0.85], ddof=1))
    assert PERCENT.spread(spread) == "85.0 ± 1.0% (84.0-86.0)"
    assert PERCENT.spread(Spread.of([0.5])) == "50.0%"
    assert PERCENT.spread(Spread.of([])) == "—"
