"""KServe V2 (inference.GRPCInferenceService) on the real server, driven by Triton's own clients.

Well-formed requests go through `tritonclient.grpc` (sync and asyncio); malformed ones that tritonclient
never sends go through the raw generated stubs. Results are checked against seqserve.v1 Classify on
the same server, since both protocols must give the same answers.
"""

from __future__ import annotations

import asyncio
import queue
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
import tritonclient.http as triton_http
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor, serialize_byte_tensor

from seqserve.v1 import classifier_pb2
from serving.protocol.v2_types import BytesTensorError, decode_bytes_elements, encode_bytes_elements
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.metrics_text import MissingSeries, delta, value
from tests.serving.server_process import ServerProcess

MODELS = ["sarcasm-flatten", "sarcasm-gru"]
LABELS = ["not_sarcastic", "sarcastic"]
GRU = {"model": "sarcasm-gru", "version": "1", "runtime": "onnx"}
MANY_TEXTS = [f"{SARCASM_TEXTS[i % len(SARCASM_TEXTS)]} {'déjà vu ' * (i % 3)}#{i}" for i in range(64)]


def prefixed(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def text_input(texts: list[str]) -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object))
    return tensor


def classify(server: ServerProcess, model: str, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    response = server.stub.Classify(classifier_pb2.ClassifyRequest(model=model, texts=texts), timeout=10)
    scores = np.array([[s.score for s in p.scores] for p in response.predictions], dtype=np.float32)
    return scores, [p.label for p in response.predictions]


def v2_stub(server: ServerProcess) -> service_pb2_grpc.GRPCInferenceServiceStub:
    return service_pb2_grpc.GRPCInferenceServiceStub(server.channel)


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(server.address) as c:
        yield c


def assert_still_serving(client: triton.InferenceServerClient) -> None:
    result = client.infer("sarcasm-gru", [text_input(["still serving"])])
    assert result.as_numpy("probabilities").shape == (1, 2)


# ---- the BYTES raw-contents format ------------------------------------------------------------


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=20))
def test_bytes_elements_match_tritons_serialization(elements):
    ours = encode_bytes_elements(elements)
    assert ours == serialize_byte_tensor(np.array(elements, dtype=object)).item()
    assert decode_bytes_elements(ours, len(elements)) == elements
    assert list(deserialize_bytes_tensor(ours)) == elements


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (prefixed(b"ab") + b"\x01\x00", 2, "too few for its 4-byte length"),
        (struct.pack("<I", 9) + b"abc", 1, "length prefix says 9 bytes, only 3 remain"),
        (prefixed(b"a", b"b"), 1, "more than the 1 elements"),
        (prefixed(b"a"), 2, "holds 1 elements; its shape declares 2"),
        (b"", 1, "holds 0 elements"),
    ],
)
def test_malformed_bytes_elements_are_refused(raw, count, message):
    with pytest.raises(BytesTensorError, match=message):
        decode_bytes_elements(raw, count)


# ---- server, model readiness and metadata -----------------------------------------------------


def test_server_is_live_ready_and_describes_itself(client, server):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "seqserve"
    assert list(metadata.extensions) == ["model_repository", "statistics", "binary_tensor_data"]
    for name in MODELS:
        assert client.is_model_ready(name) and client.is_model_ready(name, "1")
        assert not client.is_model_ready(name, "2")
    assert not client.is_model_ready("sarcasm-transformer")
    health = health_pb2_grpc.HealthStub(server.channel)
    request = health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
    assert health.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    reflected = ProtoReflectionDescriptorDatabase(server.channel)
    assert "inference.GRPCInferenceService" in reflected.get_services()
    assert reflected.FindFileContainingSymbol("inference.ModelInferRequest").package == "inference"


@pytest.mark.parametrize("version", ["", "1"])
def test_model_metadata_documents_the_tensors(client, version):
    metadata = client.get_model_metadata("sarcasm-gru", version, as_json=True)
    assert metadata == {
        "name": "sarcasm-gru",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": ["-1"]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": ["-1", "2"]},
            {"name": "label", "datatype": "BYTES", "shape": ["-1"]},
        ],
    }


@pytest.mark.parametrize(
    ("name", "version", "code", "message"),
    [
        ("sarcasm-transformer", "", "NOT_FOUND", "available models: sarcasm-flatten, sarcasm-gru"),
        ("sarcasm-gru", "7", "NOT_FOUND", "no loaded version 7; loaded versions: 1"),
        ("sarcasm-gru", "latest", "INVALID_ARGUMENT", "is not a positive integer"),
    ],
)
def test_metadata_and_infer_refuse_unknown_models_and_versions(client, name, version, code, message):
    for call in (
        lambda: client.get_model_metadata(name, version),
        lambda: client.infer(name, [text_input(["x"])], model_version=version),
    ):
        with pytest.raises(InferenceServerException) as error:
            call()
        assert error.value.status() == f"StatusCode.{code}"
        assert message in error.value.message()
    assert_still_serving(client)


# ---- inference ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("texts", [SARCASM_TEXTS[:1], MANY_TEXTS], ids=["1 text", "64 texts"])
def test_infer_with_raw_contents_equals_classify(client, server, two_sided_texts, name, texts):
    texts = [*texts, *two_sided_texts]
    result = client.infer(name, [text_input(texts)], request_id="req-7")
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (name, "1", "req-7")
    assert len(response.raw_output_contents) == 2
    probabilities, _ = classify(server, name, texts)
    assert result.as_numpy("probabilities").dtype == np.float32
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)
    labels = [label.decode() for label in result.as_numpy("label")]
    assert labels == [LABELS[i] for i in probabilities.argmax(axis=1)]
    assert set(labels) == set(LABELS)


def test_infer_returns_only_the_requested_outputs_in_request_order(client, server):
    result = client.infer(
        "sarcasm-gru",
        [text_input(SARCASM_TEXTS)],
        outputs=[triton.InferRequestedOutput("label"), triton.InferRequestedOutput("probabilities")],
    )
    assert [o.name for o in result.get_response().outputs] == ["label", "probabilities"]
    only_label = client.infer(
        "sarcasm-gru", [text_input(SARCASM_TEXTS)], outputs=[triton.InferRequestedOutput("label")]
    )
    assert only_label.as_numpy("probabilities") is None
    assert [label.decode() for label in only_label.as_numpy("label")] == classify(
        server, "sarcasm-gru", SARCASM_TEXTS
    )[1]


def typed_request(texts: list[bytes], shape: list[int] | None = None) -> service_pb2.ModelInferRequest:
    """Texts in `contents.bytes_contents`, which tritonclient never sends (it always sends raw)."""
    request = service_pb2.ModelInferRequest(model_name="sarcasm-gru")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)] if shape is None else shape)
    tensor.contents.bytes_contents.extend(texts)
    return request


def test_typed_input_and_typed_outputs_when_binary_data_is_off(server):
    """Read from the message itself: tritonclient's as_numpy decodes FP32 only from raw contents, and
    with NumPy 2 it fails on typed BYTES contents too (np.array(..., copy=False))."""
    request = typed_request([t.encode() for t in SARCASM_TEXTS])
    for name in ("probabilities", "label"):
        request.outputs.add(name=name).parameters["binary_data"].bool_param = False
    response = v2_stub(server).ModelInfer(request, timeout=10)
    assert not response.raw_output_contents
    probabilities, labels = classify(server, "sarcasm-gru", SARCASM_TEXTS)
    (scores, label_tensor) = response.outputs
    assert list(scores.shape) == [len(SARCASM_TEXTS), 2] and list(label_tensor.shape) == [len(SARCASM_TEXTS)]
    np.testing.assert_allclose(np.reshape(scores.contents.fp32_contents, (-1, 2)), probabilities, atol=1e-6)
    assert [label.decode() for label in label_tensor.contents.bytes_contents] == labels
    request.ClearField("outputs")
    request.parameters["binary_data_output"].bool_param = False
    assert not v2_stub(server).ModelInfer(request, timeout=10).raw_output_contents


def test_asyncio_client_runs_concurrent_requests(server):
    async def run() -> list[np.ndarray]:
        async with triton_aio.InferenceServerClient(server.address) as aio_client:
            assert await aio_client.is_server_ready() and await aio_client.is_model_ready("sarcasm-flatten")
            results = await asyncio.gather(
                *(
                    aio_client.infer("sarcasm-flatten", [text_input(MANY_TEXTS[i : i + 8])])
                    for i in range(0, 64, 8)
                )
            )
            return [r.as_numpy("probabilities") for r in results]

    probabilities, _ = classify(server, "sarcasm-flatten", MANY_TEXTS)
    np.testing.assert_allclose(np.concatenate(asyncio.run(run())), probabilities, atol=1e-6)


# ---- malformed requests ------------------------------------------------------------------------


def raw_request(raw: bytes, shape: list[int], datatype: str = "BYTES", name: str = "text"):
    request = service_pb2.ModelInferRequest(model_name="sarcasm-gru", raw_input_contents=[raw])
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    return request


def fp32_input() -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="sarcasm-gru")
    request.inputs.add(name="text", datatype="FP32", shape=[2]).contents.fp32_contents.extend([1.0, 2.0])
    return request


def extra_input() -> service_pb2.ModelInferRequest:
    request = typed_request([b"fine"])
    request.inputs.add(name="language", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"en")
    return request


def raw_and_typed_contents() -> service_pb2.ModelInferRequest:
    request = typed_request([b"fine"])
    request.raw_input_contents.append(prefixed(b"fine"))
    return request


def two_raw_contents() -> service_pb2.ModelInferRequest:
    request = raw_request(prefixed(b"fine"), [1])
    request.raw_input_contents.append(prefixed(b"stray"))
    return request


def with_outputs(*outputs: tuple[str, bool | None]) -> service_pb2.ModelInferRequest:
    request = raw_request(prefixed(b"fine"), [1])
    for name, binary in outputs:
        output = request.outputs.add(name=name)
        if binary is not None:
            output.parameters["binary_data"].bool_param = binary
    return request


MALFORMED: dict[str, tuple[Callable[[], service_pb2.ModelInferRequest], str]] = {
    "wrong datatype": (fp32_input, "datatype 'FP32'; expected BYTES"),
    "wrong shape": (lambda: raw_request(prefixed(b"a", b"b"), [2, 1]), "shape [2, 1]; expected [N]"),
    "missing input": (lambda: raw_request(prefixed(b"a"), [1], name="texts"), "missing input 'text'"),
    "extra input": (extra_input, "the model takes exactly one input, 'text'"),
    "raw and typed contents": (raw_and_typed_contents, "both contents and raw_input_contents"),
    "more raw contents than inputs": (two_raw_contents, "2 raw_input_contents for 1 input"),
    "bad UTF-8 in raw contents": (
        lambda: raw_request(prefixed(b"fine", b"caf\xc3("), [2]),
        "element 1 is not valid UTF-8 (invalid continuation byte at byte 3)",
    ),
    "bad UTF-8 in bytes_contents": (lambda: typed_request([b"\xff"]), "element 0 is not valid UTF-8"),
    "length prefix past the end": (
        lambda: raw_request(struct.pack("<I", 100) + b"short", [1]),
        "length prefix says 100 bytes, only 5 remain",
    ),
    "more raw elements than the shape": (
        lambda: raw_request(prefixed(b"a", b"b"), [1]),
        "holds more than the 1 elements its shape declares",
    ),
    "fewer raw elements than the shape": (
        lambda: raw_request(prefixed(b"a"), [3]),
        "holds 1 elements; its shape declares 3",
    ),
    "fewer bytes_contents than the shape": (
        lambda: typed_request([b"a"], shape=[2]),
        "has 1 elements in contents.bytes_contents; its shape declares 2",
    ),
    "unknown output": (lambda: with_outputs(("scores", None)), "unknown output 'scores'"),
    "mixed binary_data": (
        lambda: with_outputs(("probabilities", True), ("label", False)),
        "binary_data differs between outputs",
    ),
    "no texts": (lambda: raw_request(b"", [0]), "request has no texts"),
    "too many texts": (
        lambda: raw_request(prefixed(*[b"x"] * 300), [300]),
        "request has 300 texts; the limit is 256 (--max-texts-per-request)",
    ),
    "text too long": (
        lambda: raw_request(prefixed(b"ok", "é".encode() * 9000), [2]),
        "text 1 is 18000 bytes (UTF-8); the limit is 16384 (--max-text-bytes)",
    ),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_infer_is_invalid_argument_and_the_server_keeps_serving(server, client, case):
    build, message = MALFORMED[case]
    with pytest.raises(grpc.RpcError) as error:
        v2_stub(server).ModelInfer(build(), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()
    assert_still_serving(client)


def test_malformed_infer_for_an_unknown_model_is_not_found(server):
    request = raw_request(prefixed(b"caf\xc3("), [1])
    request.model_name = "sarcasm-transformer"
    with pytest.raises(grpc.RpcError) as error:
        v2_stub(server).ModelInfer(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_v2_requests_are_counted_like_classify(server, client):
    before = server.metrics_text()
    client.infer("sarcasm-gru", [text_input(SARCASM_TEXTS)])
    with pytest.raises(grpc.RpcError):
        v2_stub(server).ModelInfer(fp32_input(), timeout=10)
    after = server.metrics_text()

    assert delta(before, after, "seqserve_requests_total", code="OK", **GRU) == 1
    assert delta(before, after, "seqserve_texts_total", code="OK", **GRU) == len(SARCASM_TEXTS)
    assert delta(before, after, "seqserve_requests_total", code="INVALID_ARGUMENT", **GRU) == 1
    assert delta(before, after, "seqserve_batch_size_sum", **GRU) == len(SARCASM_TEXTS)


# ---- repository extension: load and unload at run time -----------------------------------------


@pytest.fixture(scope="module")
def own_server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server of its own, so that unloading models cannot disturb the other tests; it allows them."""
    with ServerProcess(
        tiny_model_repository, tmp_path_factory.mktemp("kserve-v2-server-logs"), "--model-control", "explicit"
    ) as process:
        yield process


def test_unload_makes_a_model_unavailable_and_load_brings_it_back(own_server):
    health = health_pb2_grpc.HealthStub(own_server.channel)

    def model_health() -> int:
        return health.Check(health_pb2.HealthCheckRequest(service="sarcasm-gru"), timeout=5).status

    async def run() -> None:
        async with triton_aio.InferenceServerClient(own_server.address) as v2:
            before = (await v2.infer("sarcasm-gru", [text_input(SARCASM_TEXTS)])).as_numpy("probabilities")
            await v2.unload_model("sarcasm-gru")
            assert not await v2.is_model_ready("sarcasm-gru")
            assert await v2.is_model_ready("sarcasm-flatten") and await v2.is_server_ready()
            assert model_health() == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(MissingSeries):  # an unloaded version's series are dropped
                value(own_server.metrics_text(), "seqserve_model_ready", **GRU)
            for call in (
                v2.infer("sarcasm-gru", [text_input(["gone"])]),
                v2.get_model_metadata("sarcasm-gru"),
            ):
                with pytest.raises(InferenceServerException) as error:
                    await call
                assert error.value.status() == "StatusCode.NOT_FOUND"
            index = await v2.get_model_repository_index(as_json=True)
            assert index["models"] == [
                {"name": "sarcasm-flatten", "version": "1", "state": "READY"},
                {"name": "sarcasm-gru", "state": "UNAVAILABLE", "reason": "unloaded"},
            ]
            await v2.unload_model("sarcasm-gru")  # idempotent
            await v2.load_model("sarcasm-gru")
            assert await v2.is_model_ready("sarcasm-gru", "1")
            assert model_health() == health_pb2.HealthCheckResponse.SERVING
            after = (await v2.infer("sarcasm-gru", [text_input(SARCASM_TEXTS)])).as_numpy("probabilities")
            np.testing.assert_allclose(after, before, atol=1e-6)

    asyncio.run(run())
    assert value(own_server.metrics_text(), "seqserve_model_ready", **GRU) == 1


@pytest.mark.parametrize(
    ("method", "request_message", "code", "message"),
    [
        ("RepositoryModelLoad", {"model_name": "imdb-gru"}, "NOT_FOUND", "not in the model repository"),
        ("RepositoryModelUnload", {"model_name": "imdb-gru"}, "NOT_FOUND", "not in the model repository"),
        ("RepositoryModelLoad", {"model_name": "../tokenizers"}, "INVALID_ARGUMENT", "invalid model name"),
        ("RepositoryModelLoad", {"model_name": "tokenizers"}, "NOT_FOUND", "not in the model repository"),
        ("RepositoryIndex", {"repository_name": "other"}, "NOT_FOUND", "unknown repository 'other'"),
        (
            "RepositoryModelLoad",
            {
                "model_name": "sarcasm-gru",
                "parameters": {"config": service_pb2.ModelRepositoryParameter(string_param="{}")},
            },
            "INVALID_ARGUMENT",
            "not supported",
        ),
    ],
)
def test_repository_extension_refuses_what_it_cannot_do(own_server, method, request_message, code, message):
    request_type = {
        "RepositoryModelLoad": service_pb2.RepositoryModelLoadRequest,
        "RepositoryModelUnload": service_pb2.RepositoryModelUnloadRequest,
        "RepositoryIndex": service_pb2.RepositoryIndexRequest,
    }[method]
    with pytest.raises(grpc.RpcError) as error:
        getattr(v2_stub(own_server), method)(request_type(**request_message), timeout=30)
    assert error.value.code() == getattr(grpc.StatusCode, code)
    assert message in error.value.details()
    ready = v2_stub(own_server).RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True), timeout=10)
    assert [(m.name, m.state) for m in ready.models] == [(name, "READY") for name in MODELS]


# ---- model configuration, statistics and streaming -----------------------------------------------


def test_model_config_describes_the_tensors_and_the_real_batching(client):
    config = client.get_model_config("sarcasm-gru", as_json=True)["config"]
    assert (config["name"], config["platform"], config["max_batch_size"]) == (
        "sarcasm-gru",
        "onnxruntime_onnx",
        64,
    )
    assert config["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": ["1"], "reshape": {}}]
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("probabilities", "TYPE_FP32", ["2"]),
        ("label", "TYPE_STRING", ["1"]),
    ]
    assert config["dynamic_batching"] == {
        "max_queue_delay_microseconds": "1000",
        "default_queue_policy": {"max_queue_size": 1024},  # uint32: a JSON number
    }
    with pytest.raises(InferenceServerException) as error:
        client.get_model_config("sarcasm-transformer")
    assert error.value.status() == "StatusCode.NOT_FOUND"


def test_statistics_count_requests_batches_and_failures(client):
    def stats() -> service_pb2.ModelStatistics:
        (entry,) = client.get_inference_statistics("sarcasm-flatten", "1").model_stats
        return entry

    before = stats()
    client.infer("sarcasm-flatten", [text_input(MANY_TEXTS)])
    with pytest.raises(InferenceServerException):
        client.infer("sarcasm-flatten", [text_input([])])
    after = stats()
    assert (after.name, after.version) == ("sarcasm-flatten", "1")
    assert after.inference_count - before.inference_count == len(MANY_TEXTS)
    assert after.execution_count - before.execution_count == 1
    success, fail = after.inference_stats.success, after.inference_stats.fail
    assert success.count - before.inference_stats.success.count == 1
    assert fail.count - before.inference_stats.fail.count == 1
    assert success.ns > before.inference_stats.success.ns
    by_size = {b.batch_size: b for b in after.batch_stats}
    assert by_size[len(MANY_TEXTS)].compute_input.count >= 1
    assert by_size[len(MANY_TEXTS)].compute_infer.ns > 0
    every = client.get_inference_statistics().model_stats
    assert sorted(s.name for s in every) == MODELS


STREAM_REQUESTS = [
    ("sarcasm-gru", SARCASM_TEXTS[:2], "a"),
    ("sarcasm-transformer", ["x"], "unknown model"),
    ("sarcasm-flatten", SARCASM_TEXTS, "b"),
    ("sarcasm-gru", [], "no texts"),
    ("sarcasm-flatten", SARCASM_TEXTS[1:2], "c"),
]


def check_stream_answers(answers: list[tuple[object, object]], server: ServerProcess) -> None:
    """Answers in request order: results carry their ids, failures their id and reason."""
    assert len(answers) == len(STREAM_REQUESTS)
    for (model, texts, request_id), (result, error) in zip(STREAM_REQUESTS, answers, strict=True):
        if len(request_id) == 1:
            assert error is None
            assert result.get_response().id == request_id
            np.testing.assert_allclose(
                result.as_numpy("probabilities"), classify(server, model, texts)[0], atol=1e-6
            )
        else:
            assert result is None
            assert f"request {request_id!r}: " in error.message()
    assert "NOT_FOUND" in answers[1][1].message() and "INVALID_ARGUMENT" in answers[3][1].message()


def test_stream_infer_answers_every_request_in_order_and_goes_on_after_errors(client, server):
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for model, texts, request_id in STREAM_REQUESTS:
            client.async_stream_infer(model, [text_input(texts)], request_id=request_id)
        check_stream_answers([answers.get(timeout=10) for _ in STREAM_REQUESTS], server)
    finally:
        client.stop_stream()
    assert_still_serving(client)


def test_asyncio_stream_infer(server):
    async def run() -> list[tuple[object, object]]:
        async def requests() -> AsyncIterator[dict]:
            for model, texts, request_id in STREAM_REQUESTS:
                yield {"model_name": model, "inputs": [text_input(texts)], "request_id": request_id}

        async with triton_aio.InferenceServerClient(server.address) as aio_client:
            config = await aio_client.get_model_config("sarcasm-gru")
            assert config.config.dynamic_batching.max_queue_delay_microseconds == 1000
            before = (await aio_client.get_inference_statistics("sarcasm-flatten")).model_stats[0]
            responses = aio_client.stream_infer(requests(), stream_timeout=30)
            answers = [answer async for answer in responses]
            after = (await aio_client.get_inference_statistics("sarcasm-flatten")).model_stats[0]
            # the two flatten requests of the stream that ran
            assert after.inference_stats.success.count - before.inference_stats.success.count == 2
            return answers

    check_stream_answers(asyncio.run(run()), server)


def test_rest_unload_and_load(own_server):
    client = triton_http.InferenceServerClient(urlsplit(own_server.rest_url).netloc)
    try:
        client.unload_model("sarcasm-flatten")
        assert not client.is_model_ready("sarcasm-flatten") and client.is_model_ready("sarcasm-gru")
        index = client.get_model_repository_index()
        assert {"name": "sarcasm-flatten", "state": "UNAVAILABLE", "reason": "unloaded"} in index
        client.load_model("sarcasm-flatten")
        assert client.is_model_ready("sarcasm-flatten", "1")
        with pytest.raises(InferenceServerException) as error:
            client.load_model("imdb-gru")
        assert error.value.status() == "404" and "not in the model repository" in error.value.message()
    finally:
        client.close()
