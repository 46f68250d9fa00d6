"""Malformed version strings and lengths: non-ASCII digits ('²' is a digit to `str.isdigit()` and not
to `int()`) and more digits than `int()` reads. Each is the client's error: 400 / INVALID_ARGUMENT,
counted in seqserve_requests_total like any refused request, and no traceback in the log."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.reliability.conftest import NORMAL_TEXT, assert_answers_normally, call_code
from tests.serving.metrics_text import delta
from tests.serving.rest_client import call, text_tensor
from tests.serving.server_process import ServerProcess

MODEL = "sarcasm-gru"
SUPERSCRIPT_TWO = "²"
LONG_VERSION = "1" * 5000  # beyond int()'s 4,300 digits
INFER_BODY = json.dumps({"inputs": [text_tensor([NORMAL_TEXT])]}).encode()
REQUESTS = "seqserve_requests_total"


@pytest.fixture(scope="module")
def server(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tiny_model_repository, tmp_path_factory.mktemp("versions")) as process:
        yield process
        assert_answers_normally(process.stub)
        log = process.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert '"level": "error"' not in log, log[-3000:]


def counted(server: ServerProcess, protocol: str, send: object) -> float:
    """How many INVALID_ARGUMENT requests of `protocol` the server counted while `send()` ran."""
    before = server.metrics_text()
    send()  # type: ignore[operator]
    return delta(before, server.metrics_text(), REQUESTS, code="INVALID_ARGUMENT", protocol=protocol)


def post_raw_header(server: ServerProcess, path: str, header: str, value: bytes) -> tuple[int, dict]:
    """A POST whose header value goes out as these bytes (a client typing '²' sends UTF-8)."""
    host, port = server.rest_address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", path)
        connection.putheader(header, value)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(INFER_BODY)))
        connection.endheaders(INFER_BODY)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize(
    "version", [SUPERSCRIPT_TWO, "٣", LONG_VERSION], ids=["superscript", "arabic", "long"]
)
def test_a_malformed_tf_serving_path_version_is_400_and_counted(server, version):
    quoted = urllib.parse.quote(version)
    replies = []
    count = counted(
        server,
        "tf_serving",
        lambda: replies.append(
            call(
                f"{server.rest_url}/v1/models/{MODEL}/versions/{quoted}:predict", {"instances": [NORMAL_TEXT]}
            )
        ),
    )
    assert replies[0].status == 400, replies[0].body[:300]
    assert "version" in replies[0].json()["error"]
    assert count == 1
    status = call(f"{server.rest_url}/v1/models/{MODEL}/versions/{quoted}")
    assert status.status == 400, status.body[:300]


@pytest.mark.parametrize("version", [SUPERSCRIPT_TWO, LONG_VERSION], ids=["superscript", "long"])
def test_a_malformed_v2_rest_version_is_400_and_counted(server, version):
    quoted = urllib.parse.quote(version)
    replies = []
    url = f"{server.rest_url}/v2/models/{MODEL}/versions/{quoted}"
    count = counted(server, "kserve_v2", lambda: replies.append(call(url + "/infer", INFER_BODY)))
    assert replies[0].status == 400, replies[0].body[:300]
    assert "version" in replies[0].json()["error"]
    assert count == 1
    for route in ("", "/ready", "/config", "/stats"):
        assert call(url + route).status == 400, route


@pytest.mark.parametrize(
    "value", [SUPERSCRIPT_TWO.encode(), "١٢".encode(), b"9" * 5000], ids=["superscript", "arabic", "long"]
)
def test_a_malformed_binary_header_length_is_400_and_counted(server, value):
    replies = []
    count = counted(
        server,
        "kserve_v2",
        lambda: replies.append(
            post_raw_header(server, f"/v2/models/{MODEL}/infer", "Inference-Header-Content-Length", value)
        ),
    )
    status, document = replies[0]
    assert status == 400, document
    assert "Inference-Header-Content-Length" in document["error"]
    assert count == 1


def test_a_long_v2_grpc_version_is_invalid_argument_and_counted(server):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
    request = service_pb2.ModelInferRequest(model_name=MODEL, model_version=LONG_VERSION)
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(NORMAL_TEXT.encode())
    outcome = []
    count = counted(
        server, "kserve_v2", lambda: outcome.append(call_code(lambda: stub.ModelInfer(request, timeout=10)))
    )
    assert outcome[0][0] == grpc.StatusCode.INVALID_ARGUMENT, outcome[0]
    assert count == 1
    for method, message in (
        ("ModelReady", service_pb2.ModelReadyRequest(name=MODEL, version=LONG_VERSION)),
        ("ModelMetadata", service_pb2.ModelMetadataRequest(name=MODEL, version=LONG_VERSION)),
    ):
        code, _ = call_code(lambda m=method, r=message: getattr(stub, m)(r, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code)


def test_a_long_version_in_a_v2_stream_is_an_error_message_and_the_stream_goes_on(server):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)

    def request(version: str, request_id: str) -> service_pb2.ModelInferRequest:
        message = service_pb2.ModelInferRequest(model_name=MODEL, model_version=version, id=request_id)
        tensor = message.inputs.add(name="text", datatype="BYTES", shape=[1])
        tensor.contents.bytes_contents.append(NORMAL_TEXT.encode())
        return message

    replies = []
    count = counted(
        server,
        "kserve_v2",
        lambda: replies.extend(
            stub.ModelStreamInfer(iter([request(LONG_VERSION, "bad"), request("1", "good")]), timeout=10)
        ),
    )
    assert len(replies) == 2
    assert "INVALID_ARGUMENT" in replies[0].error_message and "version" in replies[0].error_message
    assert replies[1].error_message == "" and replies[1].infer_response.id == "good"
    assert count == 1
