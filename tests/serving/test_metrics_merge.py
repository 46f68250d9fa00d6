"""Merging workers' expositions: real ServerMetrics registries, read back with prometheus-client's parser."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import ModelLabels, ServerMetrics
from serving.metrics_merge import merge
from tests.serving.metrics_text import samples, value

A = ModelLabels("sarcasm-gru", "1", "onnx")
B = ModelLabels("sarcasm-lstm", "1", "onnx")


def exposition(metrics: ServerMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def two_workers() -> tuple[ServerMetrics, ServerMetrics]:
    first, second = ServerMetrics(), ServerMetrics()
    for metrics, durations in ((first, (0.0002, 0.003)), (second, (0.0002, 0.04, 2.0))):
        model = metrics.for_model(A)
        model.set_ready(True)
        for seconds in durations:
            model.request_duration.observe(seconds)
            metrics.count_request(A, "OK", 2)
        model.queue_depth(3)
    return first, second


def test_counters_and_histograms_sum_and_stay_histograms():
    first, second = two_workers()
    first.count_request(A, "RESOURCE_EXHAUSTED", 1)
    merged = merge([exposition(first), exposition(second)])
    assert value(merged, "seqserve_requests_total", model="sarcasm-gru", code="OK") == 5
    assert value(merged, "seqserve_requests_total", code="RESOURCE_EXHAUSTED") == 1
    assert value(merged, "seqserve_texts_total", code="OK") == 10
    assert value(merged, "seqserve_request_duration_seconds_count") == 5
    assert value(merged, "seqserve_request_duration_seconds_sum") == 0.0002 * 2 + 0.003 + 0.04 + 2.0
    buckets = {labels["le"]: v for labels, v in samples(merged, "seqserve_request_duration_seconds_bucket")}
    assert (buckets["0.00025"], buckets["0.005"], buckets["0.05"], buckets["2.5"], buckets["+Inf"]) == (
        2,
        3,
        4,
        5,
        5,
    )


def test_gauges_sum_except_readiness_which_needs_every_worker():
    first, second = two_workers()
    merged = merge([exposition(first), exposition(second)])
    assert value(merged, "seqserve_queue_depth", model="sarcasm-gru") == 6
    assert value(merged, "seqserve_model_ready", model="sarcasm-gru") == 1
    second.for_model(A).set_ready(False)
    assert value(merge([exposition(first), exposition(second)]), "seqserve_model_ready") == 0
    first.for_model(B).set_ready(True)  # loaded in one worker only
    assert (
        value(merge([exposition(first), exposition(second)]), "seqserve_model_ready", model="sarcasm-lstm")
        == 0
    )


def test_created_is_the_earliest_and_one_worker_passes_through_unchanged():
    first, second = two_workers()
    created = [
        value(exposition(m), "seqserve_request_duration_seconds_created", model="sarcasm-gru")
        for m in (first, second)
    ]
    merged = merge([exposition(first), exposition(second)])
    assert value(merged, "seqserve_request_duration_seconds_created") == min(created)
    alone = exposition(first)
    assert every_sample(merge([alone])) == every_sample(alone)
    assert merge([]) == ""


def every_sample(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
