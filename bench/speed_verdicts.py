"""The speed claims and the rule that judges them from repeated timings.

A timing is never one number here: every measured configuration keeps all its samples, summarised as
median and interquartile range. "A is faster than B" needs both a large enough ratio of medians and
interquartile ranges that do not overlap, so a difference smaller than the noise is "unclear" rather
than a win for either side; the findings of a claim make its verdict by seqserve.verdicts' rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from seqserve import verdicts as rule
from seqserve.verdicts import Judgement, Verdict

FASTER_RATIO = 1.10  # "faster": the slower median is at least 1.10x the faster one
MUCH_FASTER_RATIO = 2.0  # "much faster": at least 2x


@dataclass(frozen=True)
class TimingSpread:
    """Median and interquartile range of repeated timings (any unit, the same for all compared)."""

    median: float
    low: float  # 25th percentile
    high: float  # 75th percentile
    count: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> TimingSpread:
        if len(samples) == 0:
            raise ValueError("a spread needs at least one sample")
        values = np.asarray(samples, dtype=np.float64)
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError("timings must be finite and positive")
        low, median, high = np.quantile(values, [0.25, 0.5, 0.75])
        return cls(float(median), float(low), float(high), len(values))

    @property
    def relative_iqr(self) -> float:
        return (self.high - self.low) / self.median


def speedup(fast: TimingSpread, slow: TimingSpread) -> float:
    """How many times faster `fast` is than `slow` (below 1: it is slower)."""
    return slow.median / fast.median


def judge(fast: TimingSpread, slow: TimingSpread, needed: float = FASTER_RATIO) -> Judgement:
    """Does "`fast` is faster than `slow` by `needed`x" hold for these two timings?

    It is supported when the speed-up reaches `needed` and `fast`'s 75th percentile is below `slow`'s
    25th; contradicted when the reverse holds with the plain FASTER_RATIO (the other one is clearly
    faster); anything else is unclear, including a real speed-up below `needed`.
    """
    ratio = speedup(fast, slow)
    if ratio >= needed and fast.high < slow.low:
        return Judgement.SUPPORTS
    if 1 / ratio >= FASTER_RATIO and slow.high < fast.low:
        return Judgement.CONTRADICTS
    return Judgement.UNCLEAR


@dataclass(frozen=True)
class Comparison:
    fast: str  # the architecture the claim says is faster
    slow: str


@dataclass(frozen=True)
class Claim:
    text: str
    comparisons: tuple[Comparison, ...]
    needed: float = FASTER_RATIO


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "Flatten is faster than GlobalAveragePooling/Conv1D",
        (Comparison("flatten", "gap"), Comparison("flatten", "conv")),
    ),
    Claim(
        "LSTM is slower than Conv1D/Flatten",
        (Comparison("conv", "lstm"), Comparison("flatten", "lstm")),
    ),
    Claim("GRU is faster than LSTM", (Comparison("gru", "lstm"),)),
    Claim(
        "Conv1D with global pooling trains much faster than RNN models",
        tuple(Comparison("conv", recurrent) for recurrent in ("rnn", "lstm", "lstm2", "gru")),
        MUCH_FASTER_RATIO,
    ),
    Claim("The bidirectional LSTM is faster than the 1D convolution", (Comparison("lstm", "conv"),)),
)


@dataclass(frozen=True)
class Finding:
    """One comparison of a claim in one measured setting (say ONNX, length 120, batch 32)."""

    comparison: Comparison
    setting: str
    speedup: float
    judgement: Judgement


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    verdict: Verdict
    findings: tuple[Finding, ...]

    def count(self, judgement: Judgement) -> int:
        return sum(finding.judgement is judgement for finding in self.findings)

    def tally(self) -> str:
        """E.g. "5/8 support, 1 contradicts, 2 unclear"."""
        if not self.findings:
            return "nothing to compare"
        parts = [f"{self.count(Judgement.SUPPORTS)}/{len(self.findings)} support"]
        others = (("contradict", Judgement.CONTRADICTS), ("unclear", Judgement.UNCLEAR))
        parts += [f"{self.count(judgement)} {label}" for label, judgement in others if self.count(judgement)]
        return ", ".join(parts)

    def speedup_range(self, comparison: Comparison) -> tuple[float, float] | None:
        values = [f.speedup for f in self.findings if f.comparison == comparison]
        return (min(values), max(values)) if values else None


def assess(claim: Claim, settings: Mapping[str, Mapping[str, TimingSpread]]) -> ClaimVerdict:
    """Judge every comparison of `claim` in every setting (setting -> architecture -> timing).

    The verdict follows seqserve.verdicts' rule over the findings; comparisons whose architectures were
    not measured in a setting are skipped.
    """
    findings = tuple(
        Finding(
            comparison,
            setting,
            speedup(timings[comparison.fast], timings[comparison.slow]),
            judge(timings[comparison.fast], timings[comparison.slow], claim.needed),
        )
        for setting, timings in settings.items()
        for comparison in claim.comparisons
        if comparison.fast in timings and comparison.slow in timings
    )
    return ClaimVerdict(claim, overall(findings), findings)


def overall(findings: Sequence[Finding]) -> Verdict:
    """The verdict of these findings by seqserve.verdicts' rule (the report also judges per text length)."""
    return rule.verdict(finding.judgement for finding in findings)
