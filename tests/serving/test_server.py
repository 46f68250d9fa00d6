"""The real server as a subprocess (ONNX runtime, default settings) against in-process model outputs."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve.v1 import classifier_pb2
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.metrics_text import samples, value
from tests.serving.reference import read_config, reference_probabilities

MODELS = ["sarcasm-flatten", "sarcasm-gru"]
LABELS = ["not_sarcastic", "sarcastic"]


def scores(predictions) -> np.ndarray:
    return np.array([[s.score for s in p.scores] for p in predictions])


def check_predictions(predictions, expected: np.ndarray) -> None:
    np.testing.assert_allclose(scores(predictions), expected, atol=1e-5)
    for prediction, row in zip(predictions, expected, strict=True):
        assert [s.label for s in prediction.scores] == LABELS
        assert prediction.label == LABELS[int(np.argmax(row))]
        assert prediction.score == pytest.approx(float(row.max()), abs=1e-5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("version", [0, 1])
def test_classify_equals_in_process_outputs(server, tiny_model_repository, two_sided_texts, name, version):
    texts = [*SARCASM_TEXTS, *two_sided_texts]
    request = classifier_pb2.ClassifyRequest(model=name, version=version, texts=texts)
    response = server.stub.Classify(request, timeout=10)
    assert (response.model, response.version) == (name, 1)
    check_predictions(response.predictions, reference_probabilities(tiny_model_repository, name, texts))
    assert {p.label for p in response.predictions} == set(LABELS)


def test_compare_runs_every_model_or_the_named_ones(server, tiny_model_repository, two_sided_texts):
    texts = [*SARCASM_TEXTS, *two_sided_texts]
    everything = server.stub.Compare(classifier_pb2.CompareRequest(texts=texts), timeout=10)
    assert [r.model for r in everything.results] == MODELS
    for result in everything.results:
        assert (result.version, result.runtime) == (1, "onnx")
        assert 0 < result.server_latency_seconds < 10
        # its own figures nest in its end-to-end time: the queue, then its batch's compute
        compute = result.compute_seconds_per_text * len(texts)
        assert compute > 0 and result.queue_wait_seconds + compute <= result.server_latency_seconds
        expected = reference_probabilities(tiny_model_repository, result.model, texts)
        check_predictions(result.predictions, expected)
        assert {p.label for p in result.predictions} == set(LABELS)
    subset = server.stub.Compare(
        classifier_pb2.CompareRequest(texts=SARCASM_TEXTS[:2], models=["sarcasm-gru"]), timeout=10
    )
    assert [r.model for r in subset.results] == ["sarcasm-gru"]
    assert len(subset.results[0].predictions) == 2


def test_list_and_get_model_describe_the_repository(server, tiny_model_repository):
    listed = server.stub.ListModels(classifier_pb2.ListModelsRequest(), timeout=10)
    assert [m.name for m in listed.models] == MODELS
    for name in MODELS:
        info = server.stub.GetModel(classifier_pb2.GetModelRequest(model=name), timeout=10)
        config = read_config(tiny_model_repository, name)
        assert info.architecture == name.split("-")[1]
        assert (info.dataset, list(info.labels), info.max_length) == ("sarcasm", LABELS, config.max_length)
        (version,) = info.versions
        assert (version.version, version.runtime, version.ready) == (1, "onnx", True)
        assert version.parameter_count == config.parameter_count > 0
        assert version.validation_accuracy == pytest.approx(config.training.validation_accuracy)
        assert version.test_accuracy == pytest.approx(config.training.test_accuracy)
        assert version.test_accuracy > 0
        assert info in listed.models


def test_health_is_serving_overall_and_per_model(server):
    health = health_pb2_grpc.HealthStub(server.channel)
    for service in ["", "seqserve.v1.Classifier", *MODELS]:
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service
    for unknown in ["sarcasm-nope", "../sarcasm-gru"]:
        with pytest.raises(grpc.RpcError) as error:
            health.Check(health_pb2.HealthCheckRequest(service=unknown), timeout=5)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


def classify(model: str = "sarcasm-gru", texts=("fine",), version: int = 0):
    return ("Classify", classifier_pb2.ClassifyRequest(model=model, version=version, texts=list(texts)))


BAD_REQUESTS = {
    "no texts": (*classify(texts=()), grpc.StatusCode.INVALID_ARGUMENT, "request has no texts"),
    "too many texts": (
        *classify(texts=["x"] * 300),
        grpc.StatusCode.INVALID_ARGUMENT,
        "request has 300 texts; the limit is 256 (--max-texts-per-request)",
    ),
    "text too long": (
        *classify(texts=["ok", "é" * 9000]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "text 1 is 18000 bytes (UTF-8); the limit is 16384 (--max-text-bytes)",
    ),
    "unknown model": (
        *classify(model="sarcasm-transformer"),
        grpc.StatusCode.NOT_FOUND,
        "available models: sarcasm-flatten, sarcasm-gru",
    ),
    "unknown version": (
        *classify(version=7),
        grpc.StatusCode.NOT_FOUND,
        "no loaded version 7; loaded versions: 1",
    ),
    "negative version": (*classify(version=-1), grpc.StatusCode.INVALID_ARGUMENT, "negative"),
    "compare unknown model": (
        "Compare",
        classifier_pb2.CompareRequest(texts=["x"], models=["sarcasm-gru", "imdb-gru"]),
        grpc.StatusCode.NOT_FOUND,
        "'imdb-gru' is not loaded",
    ),
    "compare no texts": (
        "Compare",
        classifier_pb2.CompareRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "no texts",
    ),
    "get unknown model": (
        "GetModel",
        classifier_pb2.GetModelRequest(model="nope"),
        grpc.StatusCode.NOT_FOUND,
        "available models",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_requests_get_actionable_statuses_and_the_server_keeps_serving(server, case):
    method, request, code, message = BAD_REQUESTS[case]
    with pytest.raises(grpc.RpcError) as error:
        getattr(server.stub, method)(request, timeout=10)
    assert error.value.code() == code
    assert message in error.value.details()
    assert len(server.stub.Classify(classify()[1], timeout=10).predictions) == 1


TRAVERSALS = [
    "..", "../tokenizers", "../../etc/passwd", "/etc/passwd", "tokenizers", "sarcasm-gru/../sarcasm-gru",
    "sarcasm-gru/1", "%2e%2e", "sarcasm-gru\x00", ".",
]  # fmt: skip


@pytest.mark.parametrize("name", TRAVERSALS)
def test_path_like_model_names_never_resolve(server, name):
    calls = [
        ("Classify", classifier_pb2.ClassifyRequest(model=name, texts=["x"])),
        ("GetModel", classifier_pb2.GetModelRequest(model=name)),
        ("Compare", classifier_pb2.CompareRequest(models=[name], texts=["x"])),
    ]
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as error:
            getattr(server.stub, method)(request, timeout=10)
        assert error.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), method


def test_stream_replies_in_request_order(server, tiny_model_repository):
    requests = [
        classifier_pb2.ClassifyRequest(model=MODELS[i % 2], texts=SARCASM_TEXTS[: 1 + i % len(SARCASM_TEXTS)])
        for i in range(12)
    ]
    replies = list(server.stub.ClassifyStream(iter(requests), timeout=20))
    assert len(replies) == len(requests)
    for request, reply in zip(requests, replies, strict=True):
        assert reply.model == request.model
        expected = reference_probabilities(tiny_model_repository, request.model, list(request.texts))
        check_predictions(reply.predictions, expected)


def test_stream_error_ends_the_stream_after_the_replies_before_it(server):
    requests = [classify()[1], classify(model="nope")[1], classify()[1]]
    stream = server.stub.ClassifyStream(iter(requests), timeout=20)
    first = next(stream)
    assert len(first.predictions) == 1
    with pytest.raises(grpc.RpcError) as error:
        next(stream)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


HISTOGRAMS = [
    "seqserve_request_duration_seconds",
    "seqserve_queue_wait_seconds",
    "seqserve_tokenize_duration_seconds",
    "seqserve_inference_duration_seconds",
    "seqserve_batch_size",
]


def test_metrics_expose_histograms_with_model_labels_and_no_request_data(server):
    secret_name = "sarcasm-secret-model-name"
    for name in MODELS:
        server.stub.Classify(classifier_pb2.ClassifyRequest(model=name, texts=SARCASM_TEXTS), timeout=10)
    with pytest.raises(grpc.RpcError):
        server.stub.Classify(classifier_pb2.ClassifyRequest(model=secret_name, texts=["x"]), timeout=10)
    text = server.metrics_text()
    for name in MODELS:
        model = {"model": name, "version": "1", "runtime": "onnx"}
        for histogram in HISTOGRAMS:
            counts = [
                labels for labels, v in samples(text, histogram + "_count") if labels == model and v > 0
            ]
            assert counts, f"{histogram} has no observations for {model}"
            buckets = {
                labels["le"]
                for labels, _ in samples(text, histogram + "_bucket")
                if labels.items() >= model.items()
            }
            assert ({"5e-05", "5.0"} if histogram != "seqserve_batch_size" else {"1.0", "256.0"}) <= buckets
        assert value(text, "seqserve_requests_total", code="OK", **model) >= 1
        assert value(text, "seqserve_texts_total", code="OK", **model) >= len(SARCASM_TEXTS)
        assert value(text, "seqserve_model_ready", **model) == 1
        assert value(text, "seqserve_requests_in_flight", **model) == 0
        assert samples(text, "seqserve_queue_depth")
    assert value(text, "seqserve_requests_total", model="_unknown", code="NOT_FOUND") >= 1
    assert secret_name not in text
    assert SARCASM_TEXTS[0] not in text
