"""The compare page's latency panel: quantiles over a sliding window of the server's own histograms."""

from __future__ import annotations

from serving.handlers.compare_page import LatencyWindow
from serving.metrics import ModelLabels, ServerMetrics


def test_the_window_covers_the_requests_since_its_oldest_snapshot():
    metrics = ServerMetrics()
    duration = metrics.for_model(ModelLabels("sarcasm-gru", "1", "onnx")).request_duration
    now = [0.0]
    window = LatencyWindow(metrics, clock=lambda: now[0])
    for _ in range(10):
        duration.observe(0.0008)
    (first,) = window.figures()  # nothing since the first snapshot: the figures since start
    assert (first["model"], first["requests"], first["window_s"]) == ("sarcasm-gru", 10, None)
    assert 0.5 < first["p50_ms"] <= first["p99_ms"] <= 1.0

    now[0] = 10.0
    for _ in range(10):
        duration.observe(0.08)
    (second,) = window.figures()  # only the ten slow ones, since the snapshot at 0 s
    assert (second["requests"], second["window_s"]) == (10, 10.0)
    assert 50 < second["p50_ms"] <= second["p99_ms"] <= 100

    now[0] = 100.0
    for _ in range(4):
        duration.observe(2.0)
    (third,) = window.figures()  # the snapshot at 0 s has aged out: the window starts at 10 s
    assert (third["requests"], third["window_s"]) == (4, 90.0)
    assert 1000 < third["p50_ms"] <= 2500
