"""KServe V2 REST on the real server's HTTP port, through Triton's HTTP clients, curl and plain JSON.

Answers are checked against seqserve.v1 Classify and against the gRPC V2 service on the same server:
both wire formats share one tensor and document layer, so they must say the same.
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
import tritonclient.http.aio as triton_http_aio
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from tests.programs import debian_program
from tests.serving.conftest import SARCASM_TEXTS
from tests.serving.metrics_text import delta
from tests.serving.rest_client import call, text_tensor
from tests.serving.server_process import ServerProcess
from tests.serving.test_kserve_v2 import GRU, LABELS, MANY_TEXTS, MODELS, classify

HEADER_LENGTH = "Inference-Header-Content-Length"
CURL = "/usr/bin/curl"


def host_port(server: ServerProcess) -> str:
    return urlsplit(server.rest_url).netloc


@pytest.fixture(scope="module")
def http_client(server: ServerProcess) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_http.InferenceServerClient(host_port(server))
    yield client
    client.close()


def http_text(texts: list[str], binary: bool) -> triton_http.InferInput:
    tensor = triton_http.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
    return tensor


def test_health_and_metadata_match_the_grpc_service(http_client, server):
    assert http_client.is_server_live() and http_client.is_server_ready()
    assert http_client.is_model_ready("sarcasm-gru") and http_client.is_model_ready("sarcasm-gru", "1")
    assert not http_client.is_model_ready("sarcasm-gru", "2")
    assert not http_client.is_model_ready("sarcasm-transformer")
    with triton_grpc.InferenceServerClient(server.address) as grpc_client:
        assert http_client.get_server_metadata() == grpc_client.get_server_metadata(as_json=True)
        for name in MODELS:
            rest = http_client.get_model_metadata(name)
            over_grpc = grpc_client.get_model_metadata(name, as_json=True)
            for tensor in over_grpc["inputs"] + over_grpc["outputs"]:
                tensor["shape"] = [int(d) for d in tensor["shape"]]  # protobuf JSON writes int64 as strings
            assert rest == over_grpc


@pytest.mark.parametrize("binary_in", [False, True], ids=["JSON in", "binary in"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["JSON out", "binary out"])
def test_infer_equals_classify(http_client, server, two_sided_texts, binary_in, binary_out):
    texts = [*MANY_TEXTS, *two_sided_texts]
    outputs = [
        triton_http.InferRequestedOutput(n, binary_data=binary_out) for n in ("probabilities", "label")
    ]
    result = http_client.infer(
        "sarcasm-gru", [http_text(texts, binary_in)], outputs=outputs, request_id="rest-1"
    )
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "sarcasm-gru",
        "1",
        "rest-1",
    )
    assert all(("data" in o) is not binary_out for o in response["outputs"])
    probabilities, _ = classify(server, "sarcasm-gru", texts)
    np.testing.assert_allclose(result.as_numpy("probabilities"), probabilities, atol=1e-6)
    labels = [label.decode() if binary_out else label for label in result.as_numpy("label")]
    assert labels == [LABELS[i] for i in probabilities.argmax(axis=1)]
    assert set(labels) == set(LABELS)


def test_infer_without_outputs_returns_every_output_in_binary(http_client, server):
    """tritonclient asks for binary_data_output when it names no output."""
    result = http_client.infer("sarcasm-flatten", [http_text(SARCASM_TEXTS, True)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities", "label"]
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), classify(server, "sarcasm-flatten", SARCASM_TEXTS)[0], atol=1e-6
    )


def test_asyncio_http_client_runs_concurrent_requests(server):
    async def run() -> list[np.ndarray]:
        async with triton_http_aio.InferenceServerClient(host_port(server)) as client:
            assert await client.is_server_ready() and await client.is_model_ready("sarcasm-gru")
            results = await asyncio.gather(
                *(
                    client.infer("sarcasm-gru", [http_text(MANY_TEXTS[i : i + 8], i % 16 == 0)])
                    for i in range(0, 64, 8)
                )
            )
            return [r.as_numpy("probabilities") for r in results]

    np.testing.assert_allclose(
        np.concatenate(asyncio.run(run())), classify(server, "sarcasm-gru", MANY_TEXTS)[0], atol=1e-6
    )


def test_plain_json_infer_and_errors(server):
    url = f"{server.rest_url}/v2/models/sarcasm-gru/infer"
    reply = call(url, {"id": "7", "inputs": [text_tensor(SARCASM_TEXTS)]})
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
    document = reply.json()
    assert document["id"] == "7"
    (probabilities, labels) = document["outputs"]
    assert probabilities["shape"] == [len(SARCASM_TEXTS), 2] and labels["shape"] == [len(SARCASM_TEXTS)]
    expected, expected_labels = classify(server, "sarcasm-gru", SARCASM_TEXTS)
    np.testing.assert_allclose(np.reshape(probabilities["data"], (-1, 2)), expected, atol=1e-6)
    assert labels["data"] == expected_labels
    for path, body, status, message in [
        ("/v2/models/sarcasm-transformer/infer", {"inputs": []}, 404, "available models: sarcasm-flatten"),
        ("/v2/models/sarcasm-gru/versions/7/infer", {"inputs": []}, 404, "loaded versions: 1"),
        ("/v2/models/sarcasm-gru/versions/latest", None, 400, "is not a positive integer"),
        ("/v2/models/sarcasm-gru/nonsense", None, 404, "no route"),
        ("/v2/models/sarcasm-gru/infer", {"id": 7, "inputs": []}, 400, "'id' must be a JSON string"),
        ("/v2/repository/models/sarcasm-gru/unload", {}, 403, "--model-control explicit"),
    ]:
        reply = call(server.rest_url + path, body)
        assert (reply.status, reply.headers["Content-Type"]) == (status, "application/json; charset=utf-8")
        assert message in reply.json()["error"], (path, reply.json())
    reply = call(url, method="GET")
    assert reply.status == 405 and "use POST" in reply.json()["error"]


def raw_elements(texts: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)


def binary_request(texts: list[str], outputs: list[dict] | None = None) -> tuple[bytes, int]:
    raw = raw_elements(texts)
    header = {
        "inputs": [
            {
                "name": "text",
                "shape": [len(texts)],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    }
    if outputs is not None:
        header["outputs"] = outputs
    encoded = json.dumps(header).encode()
    return encoded + raw, len(encoded)


def test_curl_json_and_binary(server, tmp_path):
    curl = debian_program(CURL, "curl")
    url = f"{server.rest_url}/v2/models/sarcasm-flatten/infer"
    body = json.dumps({"inputs": [text_tensor(SARCASM_TEXTS[:2])]})
    result = subprocess.run(
        [curl, "-sS", "--fail-with-body", url, "-d", body], capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    labels = json.loads(result.stdout)["outputs"][1]["data"]
    assert labels == classify(server, "sarcasm-flatten", SARCASM_TEXTS[:2])[1]

    payload, header_length = binary_request(
        SARCASM_TEXTS[:2], [{"name": "probabilities", "parameters": {"binary_data": True}}]
    )
    (tmp_path / "body").write_bytes(payload)
    result = subprocess.run(
        [curl, "-sS", "-D", str(tmp_path / "headers"), url, "-H", f"{HEADER_LENGTH}: {header_length}",
         "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{tmp_path / 'body'}"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    headers = (tmp_path / "headers").read_text().lower()
    json_length = int(headers.split(f"{HEADER_LENGTH.lower()}: ")[1].split()[0])
    (output,) = json.loads(result.stdout[:json_length])["outputs"]
    assert output["parameters"] == {"binary_data_size": 2 * 2 * 4}
    np.testing.assert_allclose(
        np.frombuffer(result.stdout[json_length:], dtype="<f4").reshape(2, 2),
        classify(server, "sarcasm-flatten", SARCASM_TEXTS[:2])[0],
        atol=1e-6,
    )
    status = subprocess.run(
        [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", url, "-d", "{"],
        capture_output=True,
        timeout=30,
    )
    assert status.stdout == b"400"


def test_config_and_statistics_match_the_grpc_service(http_client, server):
    with triton_grpc.InferenceServerClient(server.address) as grpc_client:
        config = http_client.get_model_config("sarcasm-gru")
        assert json_format.ParseDict(config, model_config_pb2.ModelConfig()) == (
            grpc_client.get_model_config("sarcasm-gru").config
        )
        assert config["max_batch_size"] == 64
        assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 1000
        assert [(i["name"], i["data_type"]) for i in config["input"]] == [("text", "TYPE_STRING")]
        assert [o["dims"] for o in config["output"]] == [[2], [1]]

        def stats() -> dict:
            (entry,) = http_client.get_inference_statistics("sarcasm-gru")["model_stats"]
            return entry

        before = stats()
        http_client.infer("sarcasm-gru", [http_text(SARCASM_TEXTS, True)])
        call(f"{server.rest_url}/v2/models/sarcasm-gru/infer", {"inputs": [{"name": "text"}]})  # fails
        after = stats()
        assert after["inference_count"] - before["inference_count"] == len(SARCASM_TEXTS)
        assert after["execution_count"] - before["execution_count"] == 1
        for kind, moved in (("success", 1), ("fail", 1), ("queue", 1), ("compute_infer", 1)):
            assert after["inference_stats"][kind]["count"] - before["inference_stats"][kind]["count"] == moved
        assert (
            after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
        )
        assert after["last_inference"] >= before["last_inference"] > 0
        sizes = {b["batch_size"]: b["compute_infer"]["count"] for b in after["batch_stats"]}
        assert sizes[len(SARCASM_TEXTS)] >= 1
        over_grpc = grpc_client.get_inference_statistics("sarcasm-gru", "1", as_json=True)["model_stats"][0]
        assert int(over_grpc["inference_count"]) == after["inference_count"]
        every = http_client.get_inference_statistics()["model_stats"]
        assert sorted(s["name"] for s in every) == MODELS


def test_rest_requests_are_counted_like_classify(server, http_client):
    before = server.metrics_text()
    http_client.infer("sarcasm-gru", [http_text(SARCASM_TEXTS, False)])
    call(f"{server.rest_url}/v2/models/sarcasm-gru/infer", {"inputs": [text_tensor([])]})
    after = server.metrics_text()

    assert delta(before, after, "seqserve_requests_total", code="OK", **GRU) == 1
    assert delta(before, after, "seqserve_texts_total", code="OK", **GRU) == len(SARCASM_TEXTS)
    assert delta(before, after, "seqserve_requests_total", code="INVALID_ARGUMENT", **GRU) == 1


def test_repository_index_over_rest(http_client):
    index = http_client.get_model_repository_index()
    assert index == [{"name": name, "version": "1", "state": "READY"} for name in MODELS]
    with pytest.raises(InferenceServerException) as error:
        http_client.load_model("sarcasm-gru")
    assert error.value.status() == "403"


def test_the_request_duration_covers_decoding_and_encoding_the_body(server):
    """Regression: seqserve_request_duration_seconds began when the request path was called, after the
    JSON was parsed, and ended before the answer was encoded: a request whose parsing took most of its
    time recorded next to nothing of it. A request echoing a 2 MB id is parsed and encoded twice as
    long as its inference takes many times over; its recorded duration must hold that work."""
    url = f"{server.rest_url}/v2/models/{GRU['model']}/infer"
    body = json.dumps({"id": "x" * 2_000_000, "inputs": [text_tensor(["a short headline"])]}).encode()
    small = json.dumps({"inputs": [text_tensor(["a short headline"])]}).encode()
    codec = []  # what parsing the body and encoding its answer costs here, in this process
    for _ in range(3):
        started = time.perf_counter()
        json.dumps(json.loads(body))
        codec.append(time.perf_counter() - started)

    def recorded(payload: bytes) -> float:
        before = server.metrics_text()
        assert call(url, payload).status == 200
        return delta(before, server.metrics_text(), "seqserve_request_duration_seconds_sum", **GRU)

    baseline = min(recorded(small) for _ in range(3))
    assert recorded(body) - baseline >= 0.5 * min(codec)
