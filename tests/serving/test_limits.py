"""A server with tight limits: batching while busy, full queues, expired deadlines, oversized messages.

The batcher waits for company only while a batch of the same model runs, so the batching and deadline
tests keep the slow model busy with one request first: its batch waits at the gate
(tests/serving/gate.py) until the test releases it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from seqserve.v1 import classifier_pb2
from tests.serving.gate import Gate, Run
from tests.serving.metrics_text import delta, value
from tests.serving.server_process import ServerProcess
from tests.serving.slow_model import SLOW_MODEL, repository_with_slow_model

GRU = {"model": "sarcasm-gru", "version": "1", "runtime": "onnx"}
SLOW = {"model": SLOW_MODEL, "version": "1", "runtime": "onnx"}
MAX_BATCH = 4
DELAY_S = 0.3
DEADLINE_S = 1.0  # of a request queued behind the held batch: long enough to reach the queue first


@pytest.fixture(scope="module")
def tight_server(
    tiny_model_repository: Path, gate: Gate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("tight") / "models"
    repository = repository_with_slow_model(tiny_model_repository, root, matmuls=1)
    with ServerProcess(
        repository,
        tmp_path_factory.mktemp("tight-server-logs"),
        "--max-queue-size", "2", "--inference-threads", "1", "--max-batch-size", str(MAX_BATCH),
        "--max-queue-delay-us", str(int(DELAY_S * 1e6)), "--max-message-bytes", "200000",
        env=gate.env,
    ) as process:  # fmt: skip
        yield process


@pytest.fixture
def held(gate: Gate) -> Iterator[Gate]:
    """The gate holding the slow model's runs for one test."""
    gate.hold()
    try:
        yield gate
    finally:
        gate.open()


def request(texts: list[str], model: str = "sarcasm-gru") -> classifier_pb2.ClassifyRequest:
    return classifier_pb2.ClassifyRequest(model=model, texts=texts)


def keep_slow_model_busy(server: ServerProcess, gate: Gate) -> tuple[grpc.Future, Run]:
    """One request on the slow model, returned with its batch, which runs until released."""
    running = server.stub.Classify.future(request(["keeps it busy"], SLOW_MODEL), timeout=30)
    return running, gate.next_run()


def wait_for_metric(server: ServerProcess, name: str, at_least: float, **labels: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = server.metrics_text()
        if value(text, name, **labels) >= at_least:
            return text
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} never reached {at_least}")


def test_requests_arriving_while_the_model_is_busy_share_one_batch(tight_server, held):
    before = tight_server.metrics_text()
    running, busy = keep_slow_model_busy(tight_server, held)
    texts = [["headline 1"], ["headline 2", "headline 3"]]  # two requests: the queue holds two
    calls = [tight_server.stub.Classify.future(request(t, SLOW_MODEL), timeout=10) for t in texts]
    wait_for_metric(tight_server, "seqserve_queue_depth", 2, **SLOW)
    busy.release()
    shared = held.next_run()
    assert shared.rows == 3  # the two requests that queued meanwhile, as one batch (of 3 texts < max 4)
    shared.release()
    assert [len(call.result().predictions) for call in [running, *calls]] == [1, 1, 2]
    after = tight_server.metrics_text()
    assert delta(before, after, "seqserve_batch_size_count", **SLOW) == 2
    assert delta(before, after, "seqserve_batch_size_sum", **SLOW) == 4


# expired, not merely cancelled, when the client's cancellation at its deadline reaches the server within
# serving/batcher.py's DEADLINE_SLACK_S of the server's own deadline
@pytest.mark.alone
def test_request_whose_deadline_passes_while_queued_is_not_executed(tight_server, held):
    before = tight_server.metrics_text()
    running, busy = keep_slow_model_busy(tight_server, held)
    late = tight_server.stub.Classify.future(request(["too late"], SLOW_MODEL), timeout=DEADLINE_S)
    wait_for_metric(tight_server, "seqserve_queue_depth", 1, **SLOW)  # queued behind the held batch
    assert late.exception(30).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    busy.release()
    assert len(running.result().predictions) == 1
    # one more request queued after it: once it is answered, the expired one was dropped or run
    held.open()
    assert len(tight_server.stub.Classify(request(["after it"], SLOW_MODEL), timeout=10).predictions) == 1
    after = tight_server.metrics_text()
    assert delta(before, after, "seqserve_queue_expired_total", **SLOW) == 1
    assert delta(before, after, "seqserve_requests_total", code="DEADLINE_EXCEEDED", **SLOW) == 1
    for executed in ("seqserve_batch_size_sum", "seqserve_inference_duration_seconds_count"):
        assert delta(before, after, executed, **SLOW) == 2  # the busy one and the one after, only
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
    assert (
        delta(before, after, "seqserve_requests_total", code="RESOURCE_EXHAUSTED", **GRU)
        == outcomes["RESOURCE_EXHAUSTED"]
    )
    assert len(tight_server.stub.Classify(request(["still serving"]), timeout=10).predictions) == 1


def test_oversized_message_is_refused_by_the_transport(tight_server):
    oversized = request(["x" * 10_000] * 25)  # 250 kB > --max-message-bytes 200000
    with pytest.raises(grpc.RpcError) as error:
        tight_server.stub.Classify(oversized, timeout=10)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.value.details()
    assert len(tight_server.stub.Classify(request(["still serving"]), timeout=10).predictions) == 1
