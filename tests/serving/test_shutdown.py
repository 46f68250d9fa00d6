"""SIGTERM with requests in flight: every one of them completes, then the process exits 0."""

from __future__ import annotations

import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve.v1 import classifier_pb2
from tests.serving.metrics_text import value
from tests.serving.server_process import ServerProcess
from tests.serving.slow_model import SLOW_MODEL, repository_with_slow_model

IN_FLIGHT = 20
GRACE_S = 10


def test_sigterm_finishes_in_flight_requests_and_exits_zero(tiny_model_repository, tmp_path):
    # a slow model keeps one batch running and the other requests queued when SIGTERM arrives
    repository = repository_with_slow_model(tiny_model_repository, tmp_path / "models", matmuls=100)
    with ServerProcess(
        repository, tmp_path, "--max-queue-delay-us", "500000", "--max-batch-size", "256",
        "--grace-period-s", str(GRACE_S),
    ) as server:  # fmt: skip
        calls = [
            server.stub.Classify.future(
                classifier_pb2.ClassifyRequest(model=SLOW_MODEL, texts=[f"t {i}"]), timeout=30
            )
            for i in range(IN_FLIGHT)
        ]
        deadline = time.monotonic() + 10
        while value(server.metrics_text(), "seqserve_requests_in_flight") < IN_FLIGHT:
            assert time.monotonic() < deadline, "requests never reached the server"
            time.sleep(0.01)
        assert not any(call.done() for call in calls)
        signalled = time.monotonic()
        exit_code = server.terminate(timeout=GRACE_S + 20)
        stopped_after = time.monotonic() - signalled
        results = [call.result() for call in calls]  # raises if any was lost
    assert exit_code == 0
    assert stopped_after < GRACE_S
    assert [len(r.predictions) for r in results] == [1] * IN_FLIGHT
    log = server.log_path.read_text()
    assert '"msg": "stopped"' in log


def test_health_watch_reports_not_serving_and_ends_when_shutdown_starts(tiny_model_repository, tmp_path):
    with ServerProcess(tiny_model_repository, tmp_path, "--max-queue-delay-us", "2000000") as server:
        try:
            health = health_pb2_grpc.HealthStub(server.channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service="sarcasm-gru"), timeout=20)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            # an in-flight request (waiting 2 s for company) keeps the server in its grace period
            pending = server.stub.Classify.future(
                classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=["x"]), timeout=20
            )
            time.sleep(0.2)
            server.process.send_signal(15)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            # the Watch stream ends, so it does not hold the process for the whole grace period
            assert next(watch, None) is None
            assert len(pending.result().predictions) == 1
            assert server.process.wait(20) == 0
        except grpc.RpcError as error:
            raise AssertionError(f"{error.code()}: {error.details()}") from error
