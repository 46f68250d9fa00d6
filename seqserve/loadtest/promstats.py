"""The server's own view of a run: histogram deltas between two scrapes of its /metrics page.

Quantiles are interpolated within buckets exactly as PromQL's `histogram_quantile` does, so the
figures printed next to the client's match what a Grafana panel over the same interval would show.
"""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# The server's histogram names (a stable contract: dashboards depend on them) -> the stage they time.
STAGES: dict[str, str] = {
    "queue_wait": "seqserve_queue_wait_seconds",
    "tokenize": "seqserve_tokenize_duration_seconds",
    "inference": "seqserve_inference_duration_seconds",
    "request": "seqserve_request_duration_seconds",
}
BATCH_SIZE = "seqserve_batch_size"
SCRAPE_TIMEOUT_S = 5.0

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


# metric name -> model -> histogram
Scrape = dict[str, dict[str, Histogram]]


def parse_histograms(text: str) -> Scrape:
    """Every histogram on a /metrics page, per `model` label (versions and runtimes summed)."""
    bucket_sums: dict[str, dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        for sample in family.samples:
            model = sample.labels.get("model", "")
            if sample.name == family.name + "_bucket":
                bound = float(sample.labels["le"])
                per_bound = bucket_sums[family.name][model]
                per_bound[bound] = per_bound.get(bound, 0.0) + sample.value
            elif sample.name == family.name + "_count":
                counts[family.name][model] += sample.value
            elif sample.name == family.name + "_sum":
                sums[family.name][model] += sample.value
    return {
        name: {
            model: Histogram(sorted(per_bound.items()), counts[name][model], sums[name][model])
            for model, per_bound in per_model.items()
        }
        for name, per_model in bucket_sums.items()
    }


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
        return parse_histograms(response.read().decode("utf-8"))


@dataclass(frozen=True)
class StageFigures:
    count: float
    p50_s: float
    p99_s: float
    mean_s: float


@dataclass(frozen=True)
class ServerView:
    """Per-stage figures of one model over one run, plus the mean executed batch size."""

    stages: Mapping[str, StageFigures]
    mean_batch_size: float


def server_view(before: Scrape, after: Scrape, model: str) -> ServerView | None:
    """The model's figures between two scrapes; None if the server recorded no request for it."""
    stages = {}
    for stage, name in STAGES.items():
        latest = after.get(name, {}).get(model)
        if latest is None:
            continue
        delta = latest.minus(before.get(name, {}).get(model))
        if delta.count <= 0:
            continue
        stages[stage] = StageFigures(
            delta.count, delta.quantile(0.5), delta.quantile(0.99), delta.total / delta.count
        )
    if not stages:
        return None
    batch_latest = after.get(BATCH_SIZE, {}).get(model)
    batch = batch_latest.minus(before.get(BATCH_SIZE, {}).get(model)) if batch_latest else None
    mean_batch = batch.total / batch.count if batch is not None and batch.count > 0 else math.nan
    return ServerView(stages, mean_batch)
