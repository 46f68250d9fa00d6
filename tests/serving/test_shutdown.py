"""SIGTERM with requests in flight: every one of them completes, then the process exits 0."""

from __future__ import annotations

import contextlib
import signal
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve.v1 import classifier_pb2
from tests.reliability.conftest import wait_until
from tests.serving.gate import Gate
from tests.serving.metrics_text import value
from tests.serving.server_process import ServerProcess
from tests.serving.slow_model import SLOW_MODEL, repository_with_slow_model

IN_FLIGHT = 20
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GRACE_S = 10


def slow_request(text: str) -> classifier_pb2.ClassifyRequest:
    return classifier_pb2.ClassifyRequest(model=SLOW_MODEL, texts=[text])


def test_sigterm_finishes_in_flight_requests_and_exits_zero(tiny_model_repository, tmp_path):
    # one batch of the slow model held at the gate, the other requests queued behind it, when SIGTERM arrives
    repository = repository_with_slow_model(tiny_model_repository, tmp_path / "models", matmuls=1)
    with contextlib.closing(Gate()) as gate, ServerProcess(
        repository, tmp_path, "--max-queue-delay-us", "500000", "--max-batch-size", "256",
        "--grace-period-s", str(GRACE_S), env=gate.env,
    ) as server:  # fmt: skip
        gate.hold()
        calls = [server.stub.Classify.future(slow_request(f"t {i}"), timeout=30) for i in range(IN_FLIGHT)]
        gate.next_run()
        wait_until(
            lambda: value(server.metrics_text(), "seqserve_requests_in_flight") == IN_FLIGHT,
            "every request in flight",
        )
        assert not any(call.done() for call in calls)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        health = health_pb2_grpc.HealthStub(server.channel)
        wait_until(
            lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == NOT_SERVING,
            "the drain to begin",
        )
        gate.open()
        exit_code = server.process.wait(GRACE_S + 20)
        stopped_after = time.monotonic() - signalled
        results = [call.result() for call in calls]  # raises if any was lost
    assert exit_code == 0
    assert stopped_after < GRACE_S  # drained, not cut off at the end of the grace period
    assert [len(r.predictions) for r in results] == [1] * IN_FLIGHT
    log = server.log_path.read_text()
    assert '"msg": "stopped"' in log


def test_health_watch_reports_not_serving_and_ends_when_shutdown_starts(tiny_model_repository, tmp_path):
    repository = repository_with_slow_model(tiny_model_repository, tmp_path / "models", matmuls=1)
    with contextlib.closing(Gate()) as gate, ServerProcess(repository, tmp_path, env=gate.env) as server:
        try:
            health = health_pb2_grpc.HealthStub(server.channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service="sarcasm-gru"), timeout=20)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            # an in-flight request (its batch held at the gate) keeps the server in its grace period
            gate.hold()
            pending = server.stub.Classify.future(slow_request("x"), timeout=20)
            batch = gate.next_run()
            server.process.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
            # the Watch stream ends, so it does not hold the process for the whole grace period
            assert next(watch, None) is None
            assert not pending.done()
            batch.release()
            assert len(pending.result().predictions) == 1
            assert server.process.wait(20) == 0
        except grpc.RpcError as error:
            raise AssertionError(f"{error.code()}: {error.details()}") from error
