"""KServe V2 under pressure: a full model queue and a shutdown, seen by ModelStreamInfer and by REST.

A stream pushes back on its client while the model's queue is full (it stops reading) instead of
failing requests; a unary REST request is refused with 429 and Retry-After; a REST deadline passing in
the queue is 504. On SIGTERM an open stream answers what it read, then ends with UNAVAILABLE, and new
REST requests get 503 while the drain runs.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Iterator

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.reliability.conftest import call_code, wait_until
from tests.serving.metrics_text import value
from tests.serving.rest_client import call, text_tensor
from tests.serving.server_process import ServerProcess
from tests.serving.slow_model import SLOW_MODEL, repository_with_slow_model

QUEUE = 2
STREAMED = 12
STATE_WAIT_S = 30.0


def infer_request(model: str, request_id: str) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    request.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"slow")
    return request


def queue_depth(server: ServerProcess) -> float:
    return value(server.metrics_text(), "seqserve_queue_depth", model=SLOW_MODEL)


def test_a_stream_waits_for_queue_room_while_unary_requests_are_refused(tiny_model_repository, tmp_path):
    repository = repository_with_slow_model(tiny_model_repository, tmp_path / "models", matmuls=30)
    with ServerProcess(
        repository, tmp_path, "--max-queue-size", str(QUEUE), "--max-batch-size", "1",
        "--inference-threads", "1", "--max-queue-delay-us", "0",
    ) as server:  # fmt: skip
        stub = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
        responses: list[service_pb2.ModelStreamInferResponse] = []

        def stream() -> None:
            requests = (infer_request(SLOW_MODEL, f"s{i}") for i in range(STREAMED))
            responses.extend(stub.ModelStreamInfer(requests, timeout=120))

        streaming = threading.Thread(target=stream, daemon=True)
        streaming.start()
        wait_until(lambda: queue_depth(server) >= QUEUE, "a full queue", STATE_WAIT_S)
        url = f"{server.rest_url}/v2/models/{SLOW_MODEL}/infer"
        refused = call(url, {"inputs": [text_tensor(["unary"])]})
        streaming.join(120)
        assert not streaming.is_alive()
        # the deadline (1 µs, Triton's `timeout` parameter) passes while the request waits to run
        expired = call(url, {"inputs": [text_tensor(["late"])], "parameters": {"timeout": 1}})
        metrics = server.metrics_text()
    assert refused.status == 429 and refused.headers["Retry-After"] == "1"
    assert "--max-queue-size" in refused.json()["error"]
    assert [r.error_message for r in responses] == [""] * STREAMED
    assert [r.infer_response.id for r in responses] == [f"s{i}" for i in range(STREAMED)]
    assert expired.status == 504 and "deadline" in expired.json()["error"]
    assert value(metrics, "seqserve_requests_total", model=SLOW_MODEL, code="OK") == STREAMED


def test_sigterm_drains_an_open_v2_stream_and_refuses_new_rest_requests(tiny_model_repository, tmp_path):
    repository = repository_with_slow_model(tiny_model_repository, tmp_path / "models")
    with ServerProcess(
        repository, tmp_path, "--grace-period-s", "60", "--max-queue-delay-us", "200000"
    ) as server:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
        requests: queue.Queue[service_pb2.ModelInferRequest | None] = queue.Queue()

        def sent() -> Iterator[service_pb2.ModelInferRequest]:
            while (request := requests.get(timeout=60)) is not None:
                yield request

        try:
            replies = stub.ModelStreamInfer(sent(), timeout=60)
            requests.put(infer_request("sarcasm-gru", "before"))
            assert next(replies).infer_response.id == "before"
            for i in range(2):  # one runs (slowly), one waits in the queue when the signal arrives
                requests.put(infer_request(SLOW_MODEL, f"slow {i}"))
            wait_until(
                lambda: value(server.metrics_text(), "seqserve_requests_in_flight", model=SLOW_MODEL) == 2,
                "the slow requests in flight",
                STATE_WAIT_S,
            )
            server.process.send_signal(signal.SIGTERM)
            wait_until(
                lambda: call(f"{server.rest_url}/v2/health/ready").status == 503, "not ready", STATE_WAIT_S
            )
            draining = call(
                f"{server.rest_url}/v2/models/sarcasm-gru/infer", {"inputs": [text_tensor(["x"])]}
            )
            answered = [next(replies) for _ in range(2)]
            ending, _ = call_code(lambda: next(replies))
            exit_code = server.process.wait(30)
        finally:
            requests.put(None)
    assert draining.status == 503 and "shutting down" in draining.json()["error"]
    assert [(r.infer_response.id, r.error_message) for r in answered] == [("slow 0", ""), ("slow 1", "")]
    assert ending == grpc.StatusCode.UNAVAILABLE
    assert exit_code == 0


def test_a_stream_cancelled_mid_way_leaks_no_queue_slot_or_request(tiny_model_repository, tmp_path):
    """A client that cancels ModelStreamInfer while its requests are queued and running: the queue
    empties, nothing stays in flight, and the whole queue is free for the next stream."""
    repository = repository_with_slow_model(tiny_model_repository, tmp_path / "models", matmuls=30)
    with ServerProcess(
        repository, tmp_path, "--max-queue-size", str(QUEUE), "--max-batch-size", "1",
        "--inference-threads", "1", "--max-queue-delay-us", "0",
    ) as server:  # fmt: skip
        stub = service_pb2_grpc.GRPCInferenceServiceStub(server.channel)
        for _ in range(3):  # several cancellations: a leak would add up and fill the queue
            requests = (infer_request(SLOW_MODEL, f"c{i}") for i in range(STREAMED))
            stream = stub.ModelStreamInfer(requests, timeout=120)
            wait_until(lambda: queue_depth(server) >= QUEUE, "a full queue", STATE_WAIT_S)
            stream.cancel()
            code, _ = call_code(lambda s=stream: list(s))
            assert code == grpc.StatusCode.CANCELLED

            def settled() -> bool:
                text = server.metrics_text()
                in_flight = value(text, "seqserve_requests_in_flight", model=SLOW_MODEL)
                return value(text, "seqserve_queue_depth", model=SLOW_MODEL) == 0 and in_flight == 0

            wait_until(settled, "the queue and in-flight gauges back to 0", STATE_WAIT_S)
        requests = (infer_request(SLOW_MODEL, f"after{i}") for i in range(STREAMED))
        responses = list(stub.ModelStreamInfer(requests, timeout=120))
        assert [r.error_message for r in responses] == [""] * STREAMED
        unary = call(f"{server.rest_url}/v2/models/{SLOW_MODEL}/infer", {"inputs": [text_tensor(["x"])]})
        assert unary.status == 200
        assert server.terminate() == 0
