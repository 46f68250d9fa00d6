"""The server's own view of a run: histogram and counter deltas between two scrapes of its /metrics page.

Quantiles come from seqserve.histograms (PromQL's `histogram_quantile`), so the figures printed next
to the client's match what a Grafana panel over the same interval would show; compute per text comes
from the compute counters (seqserve.compute), whose rates the dashboard's panel divides.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from seqserve.compute import ComputeTotals, compute_per_model
from seqserve.histograms import Histogram, per_model
from seqserve.metric_names import BATCH_SIZE, STAGES

SCRAPE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Scrape:
    """One /metrics page, per `model` label (versions and runtimes summed)."""

    histograms: dict[str, dict[str, Histogram]]  # metric name -> model -> histogram
    compute: dict[str, ComputeTotals]  # model -> its compute counters


def _histograms(families: Iterable[Metric]) -> dict[str, dict[str, Histogram]]:
    histograms = (family for family in families if family.type == "histogram")
    return {family.name: per_model(family.name, family.samples) for family in histograms}


def parse_histograms(text: str) -> dict[str, dict[str, Histogram]]:
    """Every histogram on a /metrics page: metric name -> model -> histogram."""
    return _histograms(text_string_to_metric_families(text))


def parse_scrape(text: str) -> Scrape:
    """Every histogram and the compute counters of a /metrics page."""
    families = list(text_string_to_metric_families(text))
    return Scrape(
        _histograms(families), compute_per_model(sample for family in families for sample in family.samples)
    )


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
        return parse_scrape(response.read().decode("utf-8"))


@dataclass(frozen=True)
class StageFigures:
    count: float
    p50_s: float
    p99_s: float
    mean_s: float


@dataclass(frozen=True)
class ServerView:
    """Per-stage figures of one model over one run, plus the mean executed batch size and the compute
    per text (NaN when the server recorded none)."""

    stages: Mapping[str, StageFigures]
    mean_batch_size: float
    compute_per_text_s: float


def server_view(before: Scrape, after: Scrape, model: str) -> ServerView | None:
    """The model's figures between two scrapes; None if the server recorded no request for it."""
    stages = {}
    for stage, name in STAGES.items():
        latest = after.histograms.get(name, {}).get(model)
        if latest is None:
            continue
        delta = latest.minus(before.histograms.get(name, {}).get(model))
        if delta.count <= 0:
            continue
        stages[stage] = StageFigures(
            delta.count, delta.quantile(0.5), delta.quantile(0.99), delta.total / delta.count
        )
    if not stages:
        return None
    batch_latest = after.histograms.get(BATCH_SIZE, {}).get(model)
    batch = batch_latest.minus(before.histograms.get(BATCH_SIZE, {}).get(model)) if batch_latest else None
    mean_batch = batch.total / batch.count if batch is not None and batch.count > 0 else math.nan
    compute = after.compute.get(model, ComputeTotals()).minus(before.compute.get(model))
    return ServerView(stages, mean_batch, compute.per_text_s)
