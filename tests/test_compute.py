"""Compute per text from the server's two counters, and ratios to the fastest model."""

from __future__ import annotations

import math

import pytest
from prometheus_client.samples import Sample

from seqserve.compute import ComputeTotals, compute_per_model, times_fastest


def _sample(name: str, model: str, version: str, value: float) -> Sample:
    return Sample(name, {"model": model, "version": version, "runtime": "onnx"}, value)


def test_the_counters_sum_over_versions_per_model_and_others_are_ignored():
    totals = compute_per_model(
        [
            _sample("seqserve_compute_seconds_total", "a", "1", 0.25),
            _sample("seqserve_compute_seconds_total", "a", "2", 0.75),
            _sample("seqserve_compute_texts_total", "a", "1", 100),
            _sample("seqserve_compute_texts_total", "a", "2", 300),
            _sample("seqserve_compute_seconds_created", "a", "1", 1.7e9),
            _sample("seqserve_texts_total", "a", "1", 9999),
            _sample("seqserve_compute_texts_total", "b", "1", 0),
        ]
    )
    assert totals == {"a": ComputeTotals(1.0, 400.0), "b": ComputeTotals(0.0, 0.0)}
    assert totals["a"].per_text_s == pytest.approx(0.0025)
    assert math.isnan(totals["b"].per_text_s)  # nothing computed: no figure, not zero


def test_a_difference_covers_the_interval_and_a_restart_counts_from_zero():
    earlier, later = ComputeTotals(1.0, 100.0), ComputeTotals(1.5, 110.0)
    assert later.minus(earlier) == ComputeTotals(pytest.approx(0.5), 10.0)
    assert later.minus(None) == later
    restarted = ComputeTotals(0.01, 5.0)
    assert restarted.minus(later) == restarted


def test_ratios_are_to_the_smallest_known_cost():
    assert times_fastest([0.2, 0.05, 0.1]) == [4.0, 1.0, 2.0]
    ratios = times_fastest([math.nan, 0.5])
    assert math.isnan(ratios[0]) and ratios[1] == 1.0
    assert all(math.isnan(r) for r in times_fastest([math.nan]))
