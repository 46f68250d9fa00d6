"""Prometheus histograms as numbers: cumulative buckets, and quantiles read from them exactly as
PromQL's `histogram_quantile` does, so that a figure shown by seqserve (the compare page, the load
tester) matches what a Grafana panel over the same interval shows. Shared by the server's page, which
reads its own registry, and the load tester, which reads /metrics text."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# (upper bound, cumulative count), ascending by bound, the last bound +Inf.
Buckets = list[tuple[float, float]]


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile over cumulative buckets.

    The rank q·total is located in the first bucket whose cumulative count reaches it and linearly
    interpolated between that bucket's bounds (the lowest bucket starts at 0, unless its bound is
    not positive); a rank that falls in the +Inf bucket answers the highest finite bound. No
    observations -> NaN; q outside [0, 1] -> ∓Inf.
    """
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return math.nan
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    index = next((i for i, (_, count) in enumerate(buckets[:-1]) if count >= rank), len(buckets) - 1)
    if index == len(buckets) - 1:
        return buckets[-2][0]
    upper, count = buckets[index]
    if index == 0 and upper <= 0:
        return upper
    lower, below = (0.0, 0.0) if index == 0 else buckets[index - 1]
    in_bucket = count - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


@dataclass(frozen=True)
class Histogram:
    """One histogram of one model, summed over its versions and runtimes."""

    buckets: Buckets
    count: float
    total: float  # sum of observations

    def quantile(self, q: float) -> float:
        return histogram_quantile(q, self.buckets)

    def minus(self, earlier: Histogram | None) -> Histogram:
        """The observations made between `earlier` and this scrape (a server restart resets to self)."""
        if earlier is None or earlier.count > self.count:
            return self
        before = dict(earlier.buckets)
        return Histogram(
            [(bound, count - before.get(bound, 0.0)) for bound, count in self.buckets],
            self.count - earlier.count,
            self.total - earlier.total,
        )


def per_model(name: str, samples: Iterable[Any]) -> dict[str, Histogram]:
    """Histogram `name` from its samples (prometheus_client's `Sample`s, from a registry or a parsed
    /metrics page), one per `model` label, its versions and runtimes summed."""
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, float] = defaultdict(float)
    sums: dict[str, float] = defaultdict(float)
    for sample in samples:
        model = sample.labels.get("model", "")
        if sample.name == name + "_bucket":
            buckets[model][float(sample.labels["le"])] += sample.value
        elif sample.name == name + "_count":
            counts[model] += sample.value
        elif sample.name == name + "_sum":
            sums[model] += sample.value
    return {
        model: Histogram(sorted(per_bound.items()), counts[model], sums[model])
        for model, per_bound in buckets.items()
    }
