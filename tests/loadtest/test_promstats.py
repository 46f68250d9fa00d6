"""Server-side figures from /metrics: PromQL's histogram_quantile interpolation and scrape deltas."""

from __future__ import annotations

import math

import pytest

from seqserve.histograms import Histogram, histogram_quantile
from seqserve.loadtest.promstats import parse_scrape, server_view

INF = math.inf
# 10 observations in (0, 1], 30 in (1, 2], 60 in (2, 4], none above: 100 in all.
BUCKETS = [(1.0, 10.0), (2.0, 40.0), (4.0, 100.0), (INF, 100.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.05, 0.5),  # rank 5 of the 10 in (0, 1]: halfway from 0 to 1
        (0.1, 1.0),  # rank 10: the top of the first bucket
        (0.25, 1.5),  # rank 25: 15 of the 30 in (1, 2]
        (0.5, 2.0 + 2.0 * 10 / 60),  # rank 50: 10 of the 60 in (2, 4]
        (0.99, 2.0 + 2.0 * 59 / 60),
        (1.0, 4.0),
    ],
)
def test_quantile_interpolates_linearly_within_the_bucket(q, expected):
    assert histogram_quantile(q, BUCKETS) == pytest.approx(expected)


def test_quantile_in_the_inf_bucket_answers_the_highest_finite_bound():
    buckets = [(0.1, 1.0), (0.2, 2.0), (INF, 10.0)]  # 8 of 10 observations above 0.2
    assert histogram_quantile(0.5, buckets) == 0.2
    assert histogram_quantile(0.05, buckets) == pytest.approx(0.05)


def test_quantile_edge_cases_follow_promql():
    assert math.isnan(histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]))  # no observations
    assert math.isnan(histogram_quantile(0.5, [(1.0, 3.0)]))  # no +Inf bucket
    assert histogram_quantile(-0.1, BUCKETS) == -INF
    assert histogram_quantile(1.1, BUCKETS) == INF
    assert histogram_quantile(0.5, [(-1.0, 2.0), (INF, 4.0)]) == -1.0  # non-positive lowest bound


def _exposition(fast: int, slow: int, batches: int) -> str:
    """A /metrics page: `fast` requests in (0, 1 ms], `slow` in (1, 5 ms], two versions of one model;
    each text computed in 0.1 ms."""
    lines = [
        "# HELP seqserve_request_duration_seconds x",
        "# TYPE seqserve_request_duration_seconds histogram",
    ]
    for version, share in (("1", 1), ("2", 0)):
        f, s = fast * share, slow * share
        labels = f'model="m",version="{version}",runtime="onnx"'
        for le, count in (("0.001", f), ("0.005", f + s), ("+Inf", f + s)):
            lines.append(f'seqserve_request_duration_seconds_bucket{{{labels},le="{le}"}} {count}')
        lines.append(f"seqserve_request_duration_seconds_count{{{labels}}} {f + s}")
        lines.append(f"seqserve_request_duration_seconds_sum{{{labels}}} {0.002 * (f + s)}")
    lines += [
        "# HELP seqserve_batch_size x",
        "# TYPE seqserve_batch_size histogram",
        f'seqserve_batch_size_bucket{{model="m",version="1",runtime="onnx",le="4.0"}} {batches}',
        f'seqserve_batch_size_bucket{{model="m",version="1",runtime="onnx",le="+Inf"}} {batches}',
        f'seqserve_batch_size_count{{model="m",version="1",runtime="onnx"}} {batches}',
        f'seqserve_batch_size_sum{{model="m",version="1",runtime="onnx"}} {fast + slow}',
        "# HELP seqserve_compute_seconds_total x",
        "# TYPE seqserve_compute_seconds_total counter",
        f'seqserve_compute_seconds_total{{model="m",version="1",runtime="onnx"}} {0.0001 * (fast + slow)}',
        "# HELP seqserve_compute_texts_total x",
        "# TYPE seqserve_compute_texts_total counter",
        f'seqserve_compute_texts_total{{model="m",version="1",runtime="onnx"}} {fast + slow}',
    ]
    return "\n".join(lines) + "\n"


def test_parse_sums_versions_per_model():
    scrape = parse_scrape(_exposition(fast=4, slow=6, batches=5))
    histogram = scrape.histograms["seqserve_request_duration_seconds"]["m"]
    assert histogram.buckets == [(0.001, 4.0), (0.005, 10.0), (INF, 10.0)]
    assert (histogram.count, histogram.total) == (10.0, pytest.approx(0.02))
    assert (scrape.compute["m"].seconds, scrape.compute["m"].texts) == (pytest.approx(0.001), 10.0)


def test_server_view_covers_only_the_observations_between_scrapes():
    before = parse_scrape(_exposition(fast=10, slow=0, batches=10))
    after = parse_scrape(_exposition(fast=10, slow=20, batches=20))
    view = server_view(before, after, "m")
    assert view is not None
    request = view.stages["request"]
    assert request.count == 20
    # all 20 new observations are in (1 ms, 5 ms]: the median is halfway through that bucket
    assert request.p50_s == pytest.approx(0.001 + 0.004 * 10 / 20)
    assert request.mean_s == pytest.approx(0.002)
    assert view.mean_batch_size == pytest.approx(20 / 10)  # 20 texts in 10 new batches
    assert view.compute_per_text_s == pytest.approx(0.0001)  # 2 ms of compute over the 20 new texts
    assert set(view.stages) == {"request"}  # stages the page does not have are absent, not zero
    assert server_view(before, before, "m") is None
    assert server_view(before, after, "other") is None


def test_a_counter_reset_between_scrapes_counts_from_zero():
    earlier = Histogram([(1.0, 50.0), (INF, 50.0)], 50.0, 10.0)
    restarted = Histogram([(1.0, 3.0), (INF, 3.0)], 3.0, 0.5)
    assert restarted.minus(earlier) == restarted
