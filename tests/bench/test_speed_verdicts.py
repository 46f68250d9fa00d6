"""The verdict rule of the speed claims: spreads, one comparison, and a claim over many settings."""

from __future__ import annotations

import pytest

from bench.speed_verdicts import (
    CLAIMS,
    FASTER_RATIO,
    MUCH_FASTER_RATIO,
    Claim,
    Comparison,
    TimingSpread,
    assess,
    judge,
)
from seqserve.verdicts import Judgement, Verdict
from training.architectures import ARCHITECTURES


def around(median: float, half_width: float = 0.01) -> TimingSpread:
    """A spread whose interquartile range is median +- half_width (relative)."""
    return TimingSpread(median, median * (1 - half_width), median * (1 + half_width), 30)


def test_spread_is_median_and_quartiles_of_the_samples() -> None:
    spread = TimingSpread.of([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (spread.median, spread.low, spread.high, spread.count) == (3.0, 2.0, 4.0, 5)
    assert spread.relative_iqr == pytest.approx(2 / 3)


@pytest.mark.parametrize("samples", [[], [1.0, 0.0], [1.0, -2.0], [1.0, float("nan")], [float("inf")]])
def test_spread_refuses_samples_that_are_not_timings(samples: list[float]) -> None:
    with pytest.raises(ValueError):
        TimingSpread.of(samples)


def test_clearly_faster_supports_the_claim() -> None:
    assert judge(around(1.0), around(1.5)) is Judgement.SUPPORTS


def test_ratio_exactly_at_the_threshold_counts() -> None:
    assert judge(around(1.0, 0.001), around(FASTER_RATIO, 0.001)) is Judgement.SUPPORTS


def test_ratio_just_below_the_threshold_is_unclear() -> None:
    assert judge(around(1.0, 0.001), around(FASTER_RATIO - 0.01, 0.001)) is Judgement.UNCLEAR


def test_large_ratio_with_overlapping_spread_is_unclear() -> None:
    fast, slow = TimingSpread(1.0, 0.5, 2.0, 30), TimingSpread(1.5, 1.2, 3.0, 30)
    assert judge(fast, slow) is Judgement.UNCLEAR


def test_clearly_slower_contradicts_the_claim() -> None:
    assert judge(around(2.0), around(1.0)) is Judgement.CONTRADICTS


def test_the_reverse_within_noise_does_not_contradict() -> None:
    fast, slow = TimingSpread(2.0, 1.0, 3.0, 30), TimingSpread(1.0, 0.8, 1.5, 30)
    assert judge(fast, slow) is Judgement.UNCLEAR


def test_much_faster_needs_its_own_ratio_and_a_smaller_speedup_does_not_contradict() -> None:
    assert judge(around(1.0), around(1.5), MUCH_FASTER_RATIO) is Judgement.UNCLEAR
    assert judge(around(1.0), around(MUCH_FASTER_RATIO), MUCH_FASTER_RATIO) is Judgement.SUPPORTS
    # "much faster" is contradicted by the plain threshold: the other one is clearly faster
    assert judge(around(1.5), around(1.0), MUCH_FASTER_RATIO) is Judgement.CONTRADICTS


CLAIM = Claim("a is faster than b", (Comparison("a", "b"),))


def test_claim_holds_when_every_setting_supports_it() -> None:
    settings = {"b1": {"a": around(1.0), "b": around(2.0)}, "b32": {"a": around(3.0), "b": around(9.0)}}
    verdict = assess(CLAIM, settings)
    assert verdict.verdict == Verdict.HOLDS
    assert verdict.count(Judgement.SUPPORTS) == 2
    assert verdict.speedup_range(Comparison("a", "b")) == pytest.approx((2.0, 3.0))


def test_an_unclear_setting_beside_supporting_ones_still_holds() -> None:
    settings = {"b1": {"a": around(1.0), "b": around(2.0)}, "b32": {"a": around(3.0), "b": around(3.0)}}
    verdict = assess(CLAIM, settings)
    assert verdict.verdict == Verdict.HOLDS
    assert verdict.tally() == "1/2 support, 1 unclear"


def test_claim_is_mixed_when_settings_support_and_contradict_it() -> None:
    settings = {"b1": {"a": around(1.0), "b": around(2.0)}, "b32": {"a": around(3.0), "b": around(1.0)}}
    verdict = assess(CLAIM, settings)
    assert verdict.verdict == Verdict.MIXED
    assert verdict.tally() == "1/2 support, 1 contradict"


def test_claim_does_not_hold_when_a_setting_contradicts_it_and_none_supports_it() -> None:
    settings = {"b1": {"a": around(2.0), "b": around(1.0)}, "b32": {"a": around(3.0), "b": around(3.0)}}
    verdict = assess(CLAIM, settings)
    assert verdict.verdict == Verdict.DOES_NOT_HOLD
    assert [f.judgement for f in verdict.findings] == [Judgement.CONTRADICTS, Judgement.UNCLEAR]
    assert verdict.tally() == "0/2 support, 1 contradict, 1 unclear"


def test_claim_is_unclear_not_refuted_when_every_setting_is_unclear() -> None:
    """Regression: with nothing contradicting it and every check unclear, the claim was reported as
    "does not hold"."""
    settings = {"b1": {"a": around(1.0), "b": around(1.02)}, "b32": {"a": around(3.0), "b": around(3.0)}}
    verdict = assess(CLAIM, settings)
    assert [f.judgement for f in verdict.findings] == [Judgement.UNCLEAR, Judgement.UNCLEAR]
    assert verdict.verdict == Verdict.UNCLEAR


def test_settings_missing_an_architecture_are_skipped_and_none_means_not_measured() -> None:
    verdict = assess(CLAIM, {"b1": {"a": around(1.0), "b": around(2.0)}, "b8": {"a": around(1.0)}})
    assert [f.setting for f in verdict.findings] == ["b1"]
    assert assess(CLAIM, {"b8": {"a": around(1.0)}}).verdict == Verdict.NOT_MEASURED


def test_every_claim_compares_architectures_of_the_model_zoo() -> None:
    named = {name for claim in CLAIMS for c in claim.comparisons for name in (c.fast, c.slow)}
    assert named <= set(ARCHITECTURES)
    assert all(c.fast != c.slow for claim in CLAIMS for c in claim.comparisons)
