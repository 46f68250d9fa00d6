"""Merging workers' expositions: real ServerMetrics registries, read back with prometheus-client's parser."""

from __future__ import annotations

import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import SEQSERVE_V1, ModelLabels, ServerMetrics
from serving.metrics_merge import EOF, Answer, WorkerTotals, merge, supervisor_exposition, wants_openmetrics
from tests.serving.metrics_text import samples, value

A = ModelLabels("sarcasm-gru", "1", "onnx")
B = ModelLabels("sarcasm-lstm", "1", "onnx")


def exposition(metrics: ServerMetrics) -> str:
    return generate_latest(metrics.registry).decode()


class QueueOf:
    """What the queue-depth gauge reads of a batcher."""

    def __init__(self, queued: int) -> None:
        self.queued = queued


def two_workers() -> tuple[ServerMetrics, ServerMetrics]:
    first, second = ServerMetrics(), ServerMetrics()
    for metrics, durations in ((first, (0.0002, 0.003)), (second, (0.0002, 0.04, 2.0))):
        model = metrics.for_model(A)
        model.set_ready(True)
        for seconds in durations:
            model.request_duration.observe(seconds)
            metrics.count_request(A, "OK", 2, SEQSERVE_V1)
        model.watch_queue(QueueOf(3))
    return first, second


def test_counters_and_histograms_sum_and_stay_histograms():
    first, second = two_workers()
    first.count_request(A, "RESOURCE_EXHAUSTED", 1, SEQSERVE_V1)
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


def openmetrics_exposition(metrics: ServerMetrics) -> str:
    return generate_openmetrics(metrics.registry).decode()


def bucket_exemplars(text: str, name: str) -> dict[str, dict[str, str]]:
    """le -> exemplar labels of every bucket of `name` that has one (OpenMetrics parser)."""
    return {
        s.labels["le"]: dict(s.exemplar.labels)
        for f in openmetrics_families(text)
        for s in f.samples
        if s.name == name + "_bucket" and s.exemplar is not None
    }


def test_openmetrics_merges_with_the_newest_exemplar_of_each_bucket():
    first, second = two_workers()
    first.for_model(A).request_duration.observe(0.0003, {"trace_id": "a" * 32, "span_id": "1" * 16})
    first.for_model(A).request_duration.observe(0.3, {"trace_id": "c" * 32, "span_id": "3" * 16})
    time.sleep(0.01)  # exemplars carry their time; the later one wins a bucket both workers have
    second.for_model(A).request_duration.observe(0.0004, {"trace_id": "b" * 32, "span_id": "2" * 16})
    merged = merge([openmetrics_exposition(first), openmetrics_exposition(second)])
    assert merged.endswith("\n# EOF\n") and merged.count("# EOF") == 1
    exemplars = bucket_exemplars(merged, "seqserve_request_duration_seconds")
    assert exemplars == {
        "0.0005": {"trace_id": "b" * 32, "span_id": "2" * 16},
        "0.5": {"trace_id": "c" * 32, "span_id": "3" * 16},
    }
    # the figures are those of the text format's merge
    plain = merge([exposition(first), exposition(second)])
    for name in ("seqserve_request_duration_seconds_count", "seqserve_requests_total"):
        assert value(plain, name) == sum(
            s.value for f in openmetrics_families(merged) for s in f.samples if s.name == name
        )
    assert "# EOF" not in plain and " # {" not in plain


def test_openmetrics_is_chosen_as_prometheus_asks_for_it():
    prometheus = (
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
        "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;q=0.4,"
        "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    )
    assert wants_openmetrics(prometheus)
    assert not wants_openmetrics("text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
    assert not wants_openmetrics("")


def test_readiness_counts_only_serving_workers_and_the_supervisor_adds_its_own_families():
    first, second = two_workers()
    second.for_model(A).set_ready(False)  # e.g. a replacement still loading
    texts = [exposition(first), exposition(second)]
    assert value(merge(texts, serving=[True, False]), "seqserve_model_ready", model="sarcasm-gru") == 1
    assert value(merge(texts, serving=[True, True]), "seqserve_model_ready", model="sarcasm-gru") == 0
    assert value(merge(texts, serving=[False, False]), "seqserve_model_ready", model="sarcasm-gru") == 0
    assert value(merge(texts, serving=[True, False]), "seqserve_queue_depth") == 6  # still summed
    own = supervisor_exposition({"ready": 1, "starting": 1}, {"exit": 2, "timeout": 0})
    assert value(own, "seqserve_workers", state="starting") == 1
    assert value(own, "seqserve_worker_restarts_total", reason="exit") == 2
    assert {f.type for f in text_string_to_metric_families(own)} == {"gauge", "counter"}


def test_the_supervisor_families_parse_as_openmetrics_too():
    own = supervisor_exposition({"ready": 2}, {"exit": 1}, openmetrics=True) + "# EOF\n"
    families = {f.name: f for f in openmetrics_families(own)}
    assert families["seqserve_worker_restarts"].type == "counter"
    assert families["seqserve_worker_restarts"].samples[0].value == 1
    assert families["seqserve_workers"].samples[0].value == 2


GROWING = ("seqserve_requests_total", "seqserve_texts_total", "seqserve_request_duration_seconds_bucket")


def growing_samples(text: str, openmetrics: bool) -> dict[tuple[str, tuple], float]:
    families = openmetrics_families(text) if openmetrics else text_string_to_metric_families(text)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
        if sample.name in GROWING
    }


def answer(worker: int, metrics: ServerMetrics | None, openmetrics: bool, serving: bool = True) -> Answer:
    if metrics is None:
        return Answer(worker, None, serving)
    text = generate_openmetrics(metrics.registry) if openmetrics else generate_latest(metrics.registry)
    return Answer(worker, text.decode(), serving)


def merged(totals: WorkerTotals, answers: list[Answer], openmetrics: bool) -> str:
    text = totals.merge(answers, openmetrics)
    return text if not openmetrics or text.endswith(EOF + "\n") else text + EOF + "\n"


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
def test_counters_never_go_back_when_a_worker_misses_a_scrape_or_is_replaced(openmetrics):
    totals = WorkerTotals()
    first, second = two_workers()
    both = merged(totals, [answer(0, first, openmetrics), answer(1, second, openmetrics)], openmetrics)
    assert value(both, "seqserve_requests_total", code="OK") == 5
    before = growing_samples(both, openmetrics)
    # the second worker misses a scrape: its last counts stand in for it (its gauges do not)
    missing = merged(totals, [answer(0, first, openmetrics), answer(1, None, openmetrics)], openmetrics)
    assert growing_samples(missing, openmetrics) == before
    assert value(missing, "seqserve_queue_depth") == 3
    # it is gone, and a fresh worker takes its place: its counts stay as an offset
    totals.departed(1)
    third = ServerMetrics()
    third.for_model(A).set_ready(True)
    after = merged(
        totals,
        [answer(0, first, openmetrics), answer(2, third, openmetrics), answer(1, second, openmetrics)],
        openmetrics,
    )
    assert growing_samples(after, openmetrics) == before
    third.count_request(A, "OK", 4, SEQSERVE_V1)
    later = merged(totals, [answer(0, first, openmetrics), answer(2, third, openmetrics)], openmetrics)
    assert value(later, "seqserve_requests_total", code="OK") == 6
    assert value(later, "seqserve_texts_total", code="OK") == 14
    assert value(later, "seqserve_model_ready", model="sarcasm-gru") == 1  # the offset does not vote


def test_the_offset_of_a_version_no_worker_serves_any_more_is_dropped():
    totals = WorkerTotals()
    first, second = two_workers()
    merged(totals, [answer(0, first, False), answer(1, second, False)], False)
    totals.departed(1)
    first.for_model(A).remove()  # every serving worker unloads A and loads B
    first.for_model(B).set_ready(True)
    text = merged(totals, [answer(0, first, False)], False)
    assert not samples(text, "seqserve_requests_total")
    assert value(text, "seqserve_model_ready", model="sarcasm-lstm") == 1
    # a scrape nobody serving answers keeps the offset as it is
    assert merged(WorkerTotals(), [answer(0, None, False)], False) == ""
