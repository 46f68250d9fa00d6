"""TensorFlow Serving's API against a real server, with TF Serving's own client stubs and plain HTTP.

The gRPC client is `PredictionServiceStub` / `ModelServiceStub` generated from TF Serving's published
descriptors (seqserve.tfs): the `tensorflow-serving-api` package itself requires the `tensorflow`
distribution, which cannot be installed beside `tensorflow-cpu`. REST is driven with `requests` and
curl, in row and columnar format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc

from seqserve.tfs.tensorflow.core.example import example_pb2
from seqserve.tfs.tensorflow.core.framework import types_pb2
from seqserve.tfs.tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from serving.handlers.operations import add_routes
from serving.handlers.tfs_rest import TfsRestHandler
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.gate import Gate
from tests.serving.metrics_text import delta
from tests.serving.reference import reference_probabilities
from tests.serving.server_process import REPO_ROOT, ServerProcess
from tests.serving.slow_model import SLOW_MODEL, repository_with_slow_model

LABELS = ("sarcasm-gru:stable=1,canary=2",)
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
STATE_WAIT_S = 60.0


@pytest.fixture(scope="module")
def repository(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny repository plus sarcasm-gru version 2 (the same weights: versions differ by number)."""
    root = tmp_path_factory.mktemp("tfs-models") / "models"
    shutil.copytree(tiny_model_repository, root)
    shutil.copytree(root / "sarcasm-gru" / "1", root / "sarcasm-gru" / "2")
    config = root / "sarcasm-gru" / "2" / "config.pbtxt"
    config.write_text(config.read_text().replace("version: 1\n", "version: 2\n", 1))
    return root


@pytest.fixture(scope="module")
def tfs_server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    logs = tmp_path_factory.mktemp("tfs-server-logs")
    with ServerProcess(repository, logs, "--load-versions", "all", "--version-labels", *LABELS) as process:
        yield process


@pytest.fixture(scope="module")
def prediction(tfs_server: ServerProcess) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(tfs_server.channel)


@pytest.fixture(scope="module")
def models(tfs_server: ServerProcess) -> model_service_pb2_grpc.ModelServiceStub:
    return model_service_pb2_grpc.ModelServiceStub(tfs_server.channel)


def predict_request(
    model: str, texts: list[str], version: int | None = None, label: str | None = None
) -> predict_pb2.PredictRequest:
    """What TF Serving's clients send (`tf.make_tensor_proto(texts)` builds the same tensor)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    tensor = request.inputs["text"]
    tensor.dtype = types_pb2.DT_STRING
    tensor.tensor_shape.dim.add(size=len(texts))
    tensor.string_val.extend(text.encode() for text in texts)
    return request


def probabilities_of(response: predict_pb2.PredictResponse) -> np.ndarray:
    tensor = response.outputs["probabilities"]
    assert tensor.dtype == types_pb2.DT_FLOAT
    return np.array(tensor.float_val).reshape([d.size for d in tensor.tensor_shape.dim])


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=10)
    return raised.value


def test_predict_answers_the_models_probabilities_and_labels(prediction, repository):
    response = prediction.Predict(predict_request("sarcasm-flatten", SARCASM_TEXTS), timeout=10)
    probabilities = probabilities_of(response)
    expected = reference_probabilities(repository, "sarcasm-flatten", SARCASM_TEXTS)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    labels = response.outputs["label"]
    assert labels.dtype == types_pb2.DT_STRING
    assert [d.size for d in labels.tensor_shape.dim] == [len(SARCASM_TEXTS)]
    names = [b"not_sarcastic", b"sarcastic"]
    assert list(labels.string_val) == [names[i] for i in np.argmax(expected, axis=1)]
    assert response.model_spec.name == "sarcasm-flatten"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"


def test_predict_equals_kserve_v2_infer_on_the_same_model(prediction, tfs_server):
    v2 = service_pb2_grpc.GRPCInferenceServiceStub(tfs_server.channel)
    request = service_pb2.ModelInferRequest(model_name="sarcasm-gru")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(SARCASM_TEXTS)])
    tensor.contents.bytes_contents.extend(text.encode() for text in SARCASM_TEXTS)
    request.outputs.add(name="probabilities")
    v2_response = v2.ModelInfer(request, timeout=10)
    v2_probabilities = np.frombuffer(v2_response.raw_output_contents[0], dtype="<f4").reshape(-1, 2)
    response = prediction.Predict(predict_request("sarcasm-gru", SARCASM_TEXTS), timeout=10)
    np.testing.assert_array_equal(probabilities_of(response).astype(np.float32), v2_probabilities)


def test_output_filter_returns_only_the_named_outputs(prediction):
    request = predict_request("sarcasm-gru", SARCASM_TEXTS[:2])
    request.output_filter.append("label")
    response = prediction.Predict(request, timeout=10)
    assert list(response.outputs) == ["label"]
    request.output_filter[:] = ["probabilities", "nope"]
    error = rpc_error(prediction.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'nope'" in error.details()


@pytest.mark.parametrize(
    ("version", "label", "answered"),
    [(None, None, 2), (1, None, 1), (2, None, 2), (None, "stable", 1), (None, "canary", 2)],
)
def test_model_spec_version_or_label_selects_the_version(prediction, version, label, answered):
    response = prediction.Predict(predict_request("sarcasm-gru", ["cat"], version, label), timeout=10)
    assert response.model_spec.version.value == answered


@pytest.mark.parametrize(
    ("model", "version", "label", "code", "named"),
    [
        ("nope", None, None, grpc.StatusCode.NOT_FOUND, "'nope'"),
        ("sarcasm-gru", 7, None, grpc.StatusCode.NOT_FOUND, "version 7"),
        ("sarcasm-gru", 0, None, grpc.StatusCode.NOT_FOUND, "version 0"),
        ("sarcasm-gru", None, "beta", grpc.StatusCode.INVALID_ARGUMENT, "'beta'"),
        ("sarcasm-flatten", None, "stable", grpc.StatusCode.INVALID_ARGUMENT, "'stable'"),
    ],
)
def test_unknown_models_versions_and_labels(prediction, models, model, version, label, code, named):
    error = rpc_error(prediction.Predict, predict_request(model, ["cat"], version, label))
    assert error.code() == code
    assert named in error.details()
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.CopyFrom(predict_request(model, ["cat"], version, label).model_spec)
    assert rpc_error(models.GetModelStatus, status).code() == code


def malformed(change) -> predict_pb2.PredictRequest:
    request = predict_request("sarcasm-gru", ["one", "two"])
    change(request)
    return request


def _wrong_dtype(r):
    r.inputs["text"].dtype = types_pb2.DT_FLOAT


def _missing_input(r):
    r.inputs["sentence"].CopyFrom(r.inputs["text"])
    del r.inputs["text"]


def _extra_input(r):
    r.inputs["other"].CopyFrom(r.inputs["text"])


def _count_mismatch(r):
    r.inputs["text"].string_val.append(b"three")


def _rank_two(r):
    r.inputs["text"].tensor_shape.dim.add(size=1)


def _bad_signature(r):
    r.model_spec.signature_name = "predict_images"


def _invalid_utf8(r):
    r.inputs["text"].string_val[1] = b"\xff"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_wrong_dtype, "DT_FLOAT"),
        (_missing_input, "missing input 'text'"),
        (_extra_input, "'other'"),
        (_count_mismatch, "3 string_val"),
        (_rank_two, "shape [2, 1]"),
        (_bad_signature, "'predict_images'"),
        (_invalid_utf8, "element 1"),
    ],
)
def test_malformed_predict_requests_are_invalid_argument_naming_the_field(prediction, change, named):
    error = rpc_error(prediction.Predict, malformed(change))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in error.details()


def example(text: str) -> example_pb2.Example:
    message = example_pb2.Example()
    message.features.feature["text"].bytes_list.value.append(text.encode())
    return message


def test_classify_answers_a_class_per_label_for_each_example(prediction, repository):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "sarcasm-flatten"
    request.input.example_list.examples.extend(example(text) for text in SARCASM_TEXTS)
    response = prediction.Classify(request, timeout=10)
    expected = reference_probabilities(repository, "sarcasm-flatten", SARCASM_TEXTS)
    scores = [[c.score for c in row.classes] for row in response.result.classifications]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    for row in response.result.classifications:
        assert [c.label for c in row.classes] == ["not_sarcastic", "sarcastic"]
    assert response.model_spec.version.value == 1

    with_context = classification_pb2.ClassificationRequest()
    with_context.model_spec.name = "sarcasm-flatten"
    with_context.input.example_list_with_context.context.CopyFrom(example(SARCASM_TEXTS[0]))
    with_context.input.example_list_with_context.examples.extend([example_pb2.Example(), example("cat")])
    rows = prediction.Classify(with_context, timeout=10).result.classifications
    expected = reference_probabilities(repository, "sarcasm-flatten", [SARCASM_TEXTS[0], "cat"])
    np.testing.assert_allclose([[c.score for c in row.classes] for row in rows], expected, atol=1e-5)


def test_classify_refuses_examples_without_a_text_feature(prediction):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "sarcasm-gru"
    request.input.example_list.examples.extend([example("fine"), example_pb2.Example()])
    error = rpc_error(prediction.Classify, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "examples[1]" in error.details() and "'text'" in error.details()
    request.input.example_list.examples[1].features.feature["text"].float_list.value.append(1.0)
    error = rpc_error(prediction.Classify, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "float_list" in error.details()


def test_metadata_describes_the_served_signatures(prediction):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "sarcasm-gru"
    response = prediction.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    predict = signatures.signature_def["serving_default"]
    assert predict.method_name == "tensorflow/serving/predict"
    assert predict.inputs["text"].dtype == types_pb2.DT_STRING
    assert [d.size for d in predict.inputs["text"].tensor_shape.dim] == [-1]
    assert [d.size for d in predict.outputs["probabilities"].tensor_shape.dim] == [-1, 2]
    assert predict.outputs["label"].dtype == types_pb2.DT_STRING
    classify = signatures.signature_def["classification"]
    assert classify.method_name == "tensorflow/serving/classify"
    assert set(classify.outputs) == {"classes", "scores"}
    request.metadata_field[:] = []
    error = rpc_error(prediction.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "signature_def" in error.details()


def test_model_status_lists_every_loaded_version_available(models):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "sarcasm-gru"
    response = models.GetModelStatus(request, timeout=10)
    assert [(s.version, s.state) for s in response.model_version_status] == [(1, AVAILABLE), (2, AVAILABLE)]
    request.model_spec.version_label = "stable"
    response = models.GetModelStatus(request, timeout=10)
    assert [(s.version, s.state) for s in response.model_version_status] == [(1, AVAILABLE)]


def test_methods_not_offered_are_unimplemented(prediction):
    error = rpc_error(prediction.Regress, regression_pb2.RegressionRequest())
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Predict" in error.details()


def test_reflection_and_health_know_the_tf_serving_services(tfs_server):
    database = ProtoReflectionDescriptorDatabase(tfs_server.channel)
    services = database.get_services()
    assert "tensorflow.serving.PredictionService" in services
    assert "tensorflow.serving.ModelService" in services
    assert "inference.GRPCInferenceService" in services
    described = database.FindFileContainingSymbol("tensorflow.serving.PredictionService")
    assert described.name == "tensorflow_serving/apis/prediction_service.proto"
    assert database.FindFileByName("tensorflow/core/framework/tensor.proto").package == "tensorflow"
    health = health_pb2_grpc.HealthStub(tfs_server.channel)
    for service in ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_tf_serving_requests_are_counted_with_the_others_under_their_protocol(tfs_server, prediction):
    before = tfs_server.metrics_text()
    prediction.Predict(predict_request("sarcasm-flatten", ["cat"]), timeout=10)
    url = f"{tfs_server.rest_url}/v1/models/sarcasm-flatten:predict"
    assert requests.post(url, json={"instances": ["a"]}, timeout=10).status_code == 200
    assert requests.post(url, json={"instances": [1]}, timeout=10).status_code == 400
    after = tfs_server.metrics_text()

    def counted(**labels: str) -> float:
        return delta(before, after, "seqserve_requests_total", model="sarcasm-flatten", **labels)

    # all three under tf_serving, so none under any other protocol
    assert counted() == counted(protocol="tf_serving") == 3
    assert counted(code="OK") == 2
    assert counted(code="INVALID_ARGUMENT", protocol="tf_serving") == 1


# REST


def rest(server: ServerProcess, path: str, body: object = None) -> requests.Response:
    url = f"{server.rest_url}/v1/models/{path}"
    if body is None:
        return requests.get(url, timeout=10)
    return requests.post(url, json=body, timeout=10)


def test_rest_predict_row_and_columnar_formats(tfs_server, repository, two_sided_texts):
    texts = [*SARCASM_TEXTS, *two_sided_texts]
    expected = reference_probabilities(repository, "sarcasm-flatten", texts)
    rows = rest(tfs_server, "sarcasm-flatten:predict", {"instances": texts})
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected, atol=1e-5)
    labels = [p["label"] for p in predictions]
    assert labels == [["not_sarcastic", "sarcastic"][i] for i in expected.argmax(1)]
    assert set(labels) == {"not_sarcastic", "sarcastic"}
    named = rest(tfs_server, "sarcasm-flatten:predict", {"instances": [{"text": t} for t in texts]})
    assert named.json() == rows.json()
    columns = rest(tfs_server, "sarcasm-flatten/versions/1:predict", {"inputs": {"text": texts}})
    assert columns.status_code == 200, columns.text
    outputs = columns.json()["outputs"]
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-5)
    assert outputs["label"] == [p["label"] for p in predictions]
    bare = rest(tfs_server, "sarcasm-flatten:predict", {"inputs": texts, "signature_name": ""})
    assert bare.json() == columns.json()


def test_rest_labels_classify_status_and_metadata(tfs_server, repository):
    canary = rest(tfs_server, "sarcasm-gru/labels/canary:predict", {"instances": [{"b64": "Y2F0"}]})
    stable = rest(tfs_server, "sarcasm-gru/labels/stable:predict", {"instances": ["cat"]})
    assert canary.json() == stable.json()  # the same weights; the label picks a version
    classified = rest(tfs_server, "sarcasm-gru:classify", {"examples": [{"text": "cat"}, {"text": ["dog"]}]})
    assert classified.status_code == 200, classified.text
    expected = reference_probabilities(repository, "sarcasm-gru", ["cat", "dog"])
    results = classified.json()["results"]
    assert [[label for label, _ in row] for row in results] == [["not_sarcastic", "sarcastic"]] * 2
    np.testing.assert_allclose([[score for _, score in row] for row in results], expected, atol=1e-5)
    status = rest(tfs_server, "sarcasm-gru").json()
    assert status == {
        "model_version_status": [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in (1, 2)
        ]
    }
    assert [
        s["version"] for s in rest(tfs_server, "sarcasm-gru/labels/canary").json()["model_version_status"]
    ] == ["2"]
    metadata = rest(tfs_server, "sarcasm-gru/versions/1/metadata").json()
    assert metadata["model_spec"]["version"] == "1"
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["text"]["dtype"] == "DT_STRING"
    assert [d["size"] for d in signature["outputs"]["probabilities"]["tensor_shape"]["dim"]] == ["-1", "2"]


@pytest.mark.parametrize(
    ("path", "body", "status", "named"),
    [
        ("nope:predict", {"instances": ["a"]}, 404, "'nope'"),
        ("sarcasm-gru/versions/9:predict", {"instances": ["a"]}, 404, "version 9"),
        ("sarcasm-gru/labels/beta:predict", {"instances": ["a"]}, 400, "'beta'"),
        ("sarcasm-gru/versions/x:predict", {"instances": ["a"]}, 400, "'x'"),
        ("nope", None, 404, "'nope'"),
        ("sarcasm-gru/versions/9/metadata", None, 404, "version 9"),
        ("sarcasm-gru:predict", {"instances": [["a", "b"], ["c"]]}, 400, "instances[0]"),
        ("sarcasm-gru:predict", {"instances": ["a", ["b"]]}, 400, "instances[1]"),
        ("sarcasm-gru:predict", {"inputs": {"text": ["a", ["b", "c"]]}}, 400, "inputs['text'][1]"),
        ("sarcasm-gru:predict", {"instances": [1.5]}, 400, "instances[0]"),
        ("sarcasm-gru:predict", {"instances": [{"sentence": "a"}]}, 400, "'sentence'"),
        ("sarcasm-gru:predict", {"inputs": {"sentence": ["a"]}}, 400, "'sentence'"),
        ("sarcasm-gru:predict", {"instances": [{}]}, 400, "no input 'text'"),
        ("sarcasm-gru:predict", {}, 400, "'instances'"),
        ("sarcasm-gru:predict", {"instances": ["a"], "inputs": ["b"]}, 400, "'inputs'"),
        ("sarcasm-gru:predict", {"instances": "a"}, 400, "'instances'"),
        ("sarcasm-gru:predict", {"instances": ["a"], "signature_name": 3}, 400, "'signature_name'"),
        ("sarcasm-gru:predict", {"instances": [{"b64": "!!"}]}, 400, "b64"),
        ("sarcasm-gru:predict", {"instances": [{"b64": "\u00e9"}]}, 400, "b64"),  # not ASCII: once a 500
        ("sarcasm-gru:classify", {"examples": [{"title": "a"}]}, 400, "examples[0]"),
        ("sarcasm-gru:classify", {"examples": [{"text": ["a", "b"]}]}, 400, "examples[0]['text']"),
    ],
)
def test_rest_errors_name_the_field_with_tf_servings_status(tfs_server, path, body, status, named):
    response = rest(tfs_server, path, body)
    assert response.status_code == status, response.text
    assert named in response.json()["error"]


def test_rest_predict_with_curl(tfs_server):
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed (make curl)")
    url = f"{tfs_server.rest_url}/v1/models/sarcasm-gru:predict"
    body = json.dumps({"instances": SARCASM_TEXTS[:2]})
    result = subprocess.run(
        ["curl", "-sS", "--fail-with-body", url, "-d", body], capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    predictions = json.loads(result.stdout)["predictions"]
    assert len(predictions) == 2 and all(set(p) == {"probabilities", "label"} for p in predictions)
    missing = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", f"{tfs_server.rest_url}/v1/models/nope:predict", "-d", body],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    document, code = missing.stdout.rsplit("\n", 1)
    assert code == "404" and "nope" in json.loads(document)["error"]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(["instances", "inputs", "signature_name", "examples", "context", "text", "b64", "x"])
BODIES = st.dictionaries(KEYS, JSON_VALUES | st.lists(st.text(max_size=30), max_size=5), max_size=4)
PATHS = st.sampled_from(
    ["sarcasm-gru:predict", "sarcasm-gru:classify", "sarcasm-gru/labels/canary:predict", "nope:predict",
     "sarcasm-gru/versions/1:classify", "sarcasm-gru/versions/0:predict"]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=PATHS, body=BODIES | JSON_VALUES)
def test_fuzzed_rest_bodies_never_answer_5xx(tfs_server, path, body):
    response = requests.post(f"{tfs_server.rest_url}/v1/models/{path}", json=body, timeout=10)
    assert response.status_code < 500, (path, body, response.text)
    if response.status_code != 200:
        assert response.json()["error"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64))
def test_fuzzed_raw_rest_bytes_never_answer_5xx(tfs_server, raw):
    response = requests.post(f"{tfs_server.rest_url}/v1/models/sarcasm-gru:predict", data=raw, timeout=10)
    assert response.status_code < 500, (raw, response.text)


# Loading and unloading versions, TensorFlow in and out of the process


def states(models, model: str) -> list[tuple[int, int]]:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    try:
        response = models.GetModelStatus(request, timeout=10)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND
        return []
    return [(s.version, s.state) for s in response.model_version_status]


def wait_for_state(models, model: str, wanted: list[tuple[int, int]], action: threading.Thread) -> None:
    """Poll the status while `action` runs until it shows `wanted`; fail if `action` ends first."""
    stop = time.monotonic() + STATE_WAIT_S
    seen = []
    while time.monotonic() < stop:
        seen.append(states(models, model))
        if seen[-1] == wanted:
            return
        if not action.is_alive():
            break
        time.sleep(0.005)
    pytest.fail(f"status never showed {wanted}; it showed {seen[-5:]}")


def test_status_shows_a_version_unloading_and_loading(tiny_model_repository, tmp_path):
    repository = repository_with_slow_model(tiny_model_repository, tmp_path / "models", matmuls=1)
    with contextlib.closing(Gate()) as gate, ServerProcess(
        repository, tmp_path, "--model-control", "explicit",
        "--max-batch-size", "1", "--max-queue-delay-us", "0", env=gate.env,
    ) as server:  # fmt: skip
        models = model_service_pb2_grpc.ModelServiceStub(server.channel)
        v2 = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(server.channel)
        assert states(models, SLOW_MODEL) == [(1, AVAILABLE)]
        gate.hold()
        slow = threading.Thread(
            target=lambda: prediction.Predict(predict_request(SLOW_MODEL, ["slow"]), timeout=60), daemon=True
        )
        slow.start()
        batch = gate.next_run()  # the slow batch is running, until released
        unload = threading.Thread(
            target=lambda: v2.RepositoryModelUnload(
                service_pb2.RepositoryModelUnloadRequest(model_name=SLOW_MODEL), timeout=60
            ),
            daemon=True,
        )
        unload.start()
        wait_for_state(models, SLOW_MODEL, [(1, get_model_status_pb2.ModelVersionStatus.UNLOADING)], unload)
        batch.release()
        unload.join(60)
        slow.join(60)
        assert states(models, SLOW_MODEL) == []
        load = threading.Thread(
            target=lambda: v2.RepositoryModelLoad(
                service_pb2.RepositoryModelLoadRequest(model_name=SLOW_MODEL), timeout=60
            ),
            daemon=True,
        )
        load.start()
        warm_up = gate.next_run()  # loading: the warm-up runs the slow model
        wait_for_state(models, SLOW_MODEL, [(1, get_model_status_pb2.ModelVersionStatus.LOADING)], load)
        gate.open()
        warm_up.release()
        load.join(60)
        assert states(models, SLOW_MODEL) == [(1, AVAILABLE)]


def mapped_tensorflow(pid: int) -> bool:
    return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()


def test_onnx_only_server_answers_tf_serving_without_tensorflow(tfs_server, prediction):
    prediction.Predict(predict_request("sarcasm-gru", ["cat"]), timeout=10)
    assert not mapped_tensorflow(tfs_server.process.pid)


def test_tf_runtime_server_with_tensorflow_loaded_answers_predict(repository, prediction, tmp_path):
    """The `tf` runtime imports TensorFlow, whose own tensor.proto shares the stubs' file names."""
    request = predict_request("sarcasm-gru", SARCASM_TEXTS)
    onnx = probabilities_of(prediction.Predict(request, timeout=10))
    with ServerProcess(repository, tmp_path, "--runtime", "tf") as tf_server:
        assert mapped_tensorflow(tf_server.process.pid)
        tf_prediction = prediction_service_pb2_grpc.PredictionServiceStub(tf_server.channel)
        np.testing.assert_allclose(
            probabilities_of(tf_prediction.Predict(request, timeout=30)), onnx, atol=1e-5
        )


STUBS_BESIDE_TENSORFLOW = """
import sys
order = sys.argv[1]
if order == "tensorflow-first":
    import tensorflow as tf
from seqserve.tfs.tensorflow_serving.apis import predict_pb2
if order == "stubs-first":
    import tensorflow as tf
request = predict_pb2.PredictRequest()
request.inputs["text"].ParseFromString(tf.make_tensor_proto(["a", "b"]).SerializeToString())
print(list(request.inputs["text"].string_val))
"""


@pytest.mark.parametrize("order", ["tensorflow-first", "stubs-first"])
def test_stubs_and_tensorflow_share_a_process_in_either_import_order(order):
    result = subprocess.run(
        [sys.executable, "-c", STUBS_BESIDE_TENSORFLOW, order],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[-2] == "[b'a', b'b']"


async def _resolved_handler(app: web.Application, method: str, path: str) -> str:
    match = await app.router.resolve(make_mocked_request(method, path, app=app))
    refused = match.http_exception
    return type(refused).__name__ if refused is not None else match.handler.__name__


def test_rest_routes_leave_room_for_other_verbs_and_the_compare_page(tfs_server):
    async def explain(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    add_routes(app, TfsRestHandler(None).routes())  # type: ignore[arg-type]
    app.add_routes([web.post("/v1/models/{model}:explain", explain)])
    resolved = {
        (method, path): asyncio.run(_resolved_handler(app, method, path))
        for method, path in [
            ("POST", "/v1/models/m:explain"),
            ("POST", "/v1/models/m:predict"),
            ("POST", "/v1/models/m/labels/stable:classify"),
            ("GET", "/v1/models/m/versions/2/metadata"),
            ("POST", "/v1/models/m:regress"),
        ]
    }
    assert resolved == {
        ("POST", "/v1/models/m:explain"): "explain",
        ("POST", "/v1/models/m:predict"): "predict",
        ("POST", "/v1/models/m/labels/stable:classify"): "classify",
        ("GET", "/v1/models/m/versions/2/metadata"): "metadata",
        ("POST", "/v1/models/m:regress"): "HTTPMethodNotAllowed",  # the GET status route's path
    }
    assert requests.get(f"{tfs_server.rest_url}/v1/latency", timeout=10).status_code == 200
    assert requests.get(f"{tfs_server.rest_url}/", timeout=10).status_code == 200
