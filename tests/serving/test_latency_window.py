"""The compare page's live figures: request-duration quantiles and compute per text over a sliding
window of the server's own metrics."""

from __future__ import annotations

import pytest

from serving.handlers.compare_page import LatencyWindow
from serving.metrics import ModelLabels, ServerMetrics


def test_the_window_covers_the_requests_since_its_oldest_snapshot():
    metrics = ServerMetrics()
    model = metrics.for_model(ModelLabels("sarcasm-gru", "1", "onnx"))
    now = [0.0]
    window = LatencyWindow(metrics, clock=lambda: now[0])
    for _ in range(10):
        model.request_duration.observe(0.0008)
    model.computed(texts=10, seconds=0.002)
    (first,) = window.figures()  # nothing since the first snapshot: the figures since start
    assert (first["model"], first["requests"], first["window_s"]) == ("sarcasm-gru", 10, None)
    assert 0.5 < first["p50_ms"] <= first["p99_ms"] <= 1.0
    assert (first["compute_per_text_ms"], first["computed_texts"]) == (pytest.approx(0.2), 10)

    now[0] = 10.0
    for _ in range(10):
        model.request_duration.observe(0.08)
    model.computed(texts=1, seconds=0.001)  # batches of different sizes: the window's time over its texts
    model.computed(texts=3, seconds=0.003)
    (second,) = window.figures()  # only the ten slow ones, since the snapshot at 0 s
    assert (second["requests"], second["window_s"]) == (10, 10.0)
    assert 50 < second["p50_ms"] <= second["p99_ms"] <= 100
    assert (second["compute_per_text_ms"], second["computed_texts"]) == (pytest.approx(1.0), 4)

    now[0] = 100.0
    for _ in range(4):
        model.request_duration.observe(2.0)
    model.computed(texts=4, seconds=0.02)
    (third,) = window.figures()  # the snapshot at 0 s has aged out: the window starts at 10 s
    assert (third["requests"], third["window_s"]) == (4, 90.0)
    assert 1000 < third["p50_ms"] <= 2500
    assert (third["compute_per_text_ms"], third["computed_texts"]) == (pytest.approx(5.0), 4)


def test_a_model_without_traffic_has_no_figures_yet():
    metrics = ServerMetrics()
    metrics.for_model(ModelLabels("sarcasm-flatten", "1", "onnx"))
    (row,) = LatencyWindow(metrics).figures()
    assert row["requests"] == row["computed_texts"] == 0
    assert row["p50_ms"] is row["p99_ms"] is row["compute_per_text_ms"] is None
