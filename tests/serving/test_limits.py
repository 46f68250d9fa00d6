"""A server with tight limits: batching by delay, full queues, expired deadlines, oversized messages."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from seqserve.v1 import classifier_pb2
from tests.serving.metrics_text import value
from tests.serving.server_process import ServerProcess

GRU = {"model": "sarcasm-gru", "version": "1", "runtime": "onnx"}
MAX_BATCH = 4
DELAY_S = 0.3


@pytest.fixture(scope="module")
def tight_server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tiny_model_repository,
        tmp_path_factory.mktemp("tight-server-logs"),
        "--max-queue-size", "2", "--inference-threads", "1", "--max-batch-size", str(MAX_BATCH),
        "--max-queue-delay-us", str(int(DELAY_S * 1e6)), "--max-message-bytes", "200000",
    )  # fmt: skip
    yield process
    process.kill()


def request(texts: list[str]) -> classifier_pb2.ClassifyRequest:
    return classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=texts)


def wait_for_metric(server: ServerProcess, name: str, at_least: float, **labels: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = server.metrics_text()
        if value(text, name, **labels) >= at_least:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} never reached {at_least}")


def test_concurrent_requests_arriving_within_the_delay_share_one_batch(tight_server):
    before = tight_server.metrics_text()
    calls = [tight_server.stub.Classify.future(request([f"headline {i}"]), timeout=10) for i in range(3)]
    assert all(len(call.result().predictions) == 1 for call in calls)
    after = tight_server.metrics_text()
    batches = value(after, "seqserve_batch_size_count", **GRU) - value(
        before, "seqserve_batch_size_count", **GRU
    )
    texts = value(after, "seqserve_batch_size_sum", **GRU) - value(before, "seqserve_batch_size_sum", **GRU)
    # three requests arriving within the 0.3 s delay run as one batch (of 3 < max 4) when it ends
    assert (batches, texts) == (1, 3)


def test_request_whose_deadline_passes_while_queued_is_not_executed(tight_server):
    before = tight_server.metrics_text()
    with pytest.raises(grpc.RpcError) as error:
        # alone in the queue, it waits DELAY_S for company: longer than its deadline
        tight_server.stub.Classify(request(["too late"]), timeout=DELAY_S / 3)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    expired_before = value(before, "seqserve_queue_expired_total", **GRU)
    after = wait_for_metric(tight_server, "seqserve_queue_expired_total", expired_before + 1, **GRU)
    time.sleep(DELAY_S)  # past the moment its batch would have run
    after = tight_server.metrics_text()
    assert value(after, "seqserve_queue_expired_total", **GRU) == expired_before + 1
    deadline_exceeded = {"code": "DEADLINE_EXCEEDED", **GRU}
    assert value(after, "seqserve_requests_total", **deadline_exceeded) == 1 + value(
        before, "seqserve_requests_total", **deadline_exceeded
    )
    for executed in ("seqserve_batch_size_sum", "seqserve_inference_duration_seconds_count"):
        assert value(after, executed, **GRU) == value(before, executed, **GRU)
    assert len(tight_server.stub.Classify(request(["still serving"]), timeout=10).predictions) == 1


def test_full_queue_fails_fast_with_resource_exhausted(tight_server):
    big = request([f"a rather long headline number {i} about nothing at all" for i in range(200)])
    before = tight_server.metrics_text()
    calls = [tight_server.stub.Classify.future(big, timeout=30) for _ in range(40)]
    outcomes = Counter()
    for call in calls:
        try:
            assert len(call.result().predictions) == 200
            outcomes["OK"] += 1
        except grpc.RpcError as error:
            outcomes[error.code().name] += 1
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
            assert "(--max-queue-size)" in error.details()
    assert outcomes["RESOURCE_EXHAUSTED"] >= 1 and outcomes["OK"] >= 1
    after = tight_server.metrics_text()
    counted = value(after, "seqserve_requests_total", code="RESOURCE_EXHAUSTED", **GRU) - value(
        before, "seqserve_requests_total", code="RESOURCE_EXHAUSTED", **GRU
    )
    assert counted == outcomes["RESOURCE_EXHAUSTED"]
    assert len(tight_server.stub.Classify(request(["still serving"]), timeout=10).predictions) == 1


def test_oversized_message_is_refused_by_the_transport(tight_server):
    oversized = request(["x" * 10_000] * 25)  # 250 kB > --max-message-bytes 200000
    with pytest.raises(grpc.RpcError) as error:
        tight_server.stub.Classify(oversized, timeout=10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.value.details()
    assert len(tight_server.stub.Classify(request(["still serving"]), timeout=10).predictions) == 1
