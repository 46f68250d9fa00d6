"""A server with tight limits: batching while busy, full queues, expired deadlines, oversized messages.

The batcher waits for company only while a batch of the same model runs, so the batching and deadline
tests keep the slow model (tests/serving/slow_model.py) busy with one request first.
"""

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
from tests.serving.slow_model import SLOW_MODEL, repository_with_slow_model

GRU = {"model": "sarcasm-gru", "version": "1", "runtime": "onnx"}
SLOW = {"model": SLOW_MODEL, "version": "1", "runtime": "onnx"}
MAX_BATCH = 4
DELAY_S = 0.3


@pytest.fixture(scope="module")
def tight_server(
    tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("tight") / "models"
    repository = repository_with_slow_model(tiny_model_repository, root, matmuls=100)
    with ServerProcess(
        repository,
        tmp_path_factory.mktemp("tight-server-logs"),
        "--max-queue-size", "2", "--inference-threads", "1", "--max-batch-size", str(MAX_BATCH),
        "--max-queue-delay-us", str(int(DELAY_S * 1e6)), "--max-message-bytes", "200000",
    ) as process:  # fmt: skip
        yield process


def request(texts: list[str], model: str = "sarcasm-gru") -> classifier_pb2.ClassifyRequest:
    return classifier_pb2.ClassifyRequest(model=model, texts=texts)


def keep_slow_model_busy(server: ServerProcess) -> grpc.Future:
    """One request running on the slow model (a batch of ~0.3 s), returned once it is in flight."""
    running = server.stub.Classify.future(request(["keeps it busy"], SLOW_MODEL), timeout=30)
    wait_for_metric(server, "seqserve_requests_in_flight", 1, **SLOW)
    return running


def wait_for_metric(server: ServerProcess, name: str, at_least: float, **labels: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = server.metrics_text()
        if value(text, name, **labels) >= at_least:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} never reached {at_least}")


def test_requests_arriving_while_the_model_is_busy_share_one_batch(tight_server):
    before = tight_server.metrics_text()
    running = keep_slow_model_busy(tight_server)
    texts = [["headline 1"], ["headline 2", "headline 3"]]  # two requests: the queue holds two
    calls = [tight_server.stub.Classify.future(request(t, SLOW_MODEL), timeout=10) for t in texts]
    assert [len(call.result().predictions) for call in [running, *calls]] == [1, 1, 2]
    after = tight_server.metrics_text()
    batches = value(after, "seqserve_batch_size_count", **SLOW) - value(
        before, "seqserve_batch_size_count", **SLOW
    )
    texts = value(after, "seqserve_batch_size_sum", **SLOW) - value(before, "seqserve_batch_size_sum", **SLOW)
    # the busy batch, then the two requests that queued meanwhile as one batch (of 3 texts < max 4)
    assert (batches, texts) == (2, 4)


def test_request_whose_deadline_passes_while_queued_is_not_executed(tight_server):
    before = tight_server.metrics_text()
    running = keep_slow_model_busy(tight_server)
    with pytest.raises(grpc.RpcError) as error:
        # queued behind the busy batch, which takes longer than its deadline
        tight_server.stub.Classify(request(["too late"], SLOW_MODEL), timeout=0.05)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert len(running.result().predictions) == 1
    expired_before = value(before, "seqserve_queue_expired_total", **SLOW)
    after = wait_for_metric(tight_server, "seqserve_queue_expired_total", expired_before + 1, **SLOW)
    time.sleep(DELAY_S)  # past the moment its batch would have run
    after = tight_server.metrics_text()
    assert value(after, "seqserve_queue_expired_total", **SLOW) == expired_before + 1
    deadline_exceeded = {"code": "DEADLINE_EXCEEDED", **SLOW}
    assert value(after, "seqserve_requests_total", **deadline_exceeded) == 1 + value(
        before, "seqserve_requests_total", **deadline_exceeded
    )
    for executed in ("seqserve_batch_size_sum", "seqserve_inference_duration_seconds_count"):
        assert value(after, executed, **SLOW) == value(before, executed, **SLOW) + 1  # the busy one only
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
