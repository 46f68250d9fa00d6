"""The server's own view of a run: histogram deltas between two scrapes of its /metrics page.

Quantiles come from seqserve.histograms (PromQL's `histogram_quantile`), so the figures printed next
to the client's match what a Grafana panel over the same interval would show.
"""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from seqserve.histograms import Histogram
from seqserve.metric_names import BATCH_SIZE, STAGES

SCRAPE_TIMEOUT_S = 5.0

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
