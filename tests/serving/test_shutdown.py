"""SIGTERM with requests in flight, with a batch running past the grace period, and while models load."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.harness import serve_command
from seqserve.v1 import classifier_pb2
from tests.reliability.conftest import wait_until
from tests.serving.conftest import LONG_TEXT
from tests.serving.gate import Gate
from tests.serving.metrics_text import value
from tests.serving.server_process import REPO_ROOT, ServerProcess, free_port
from tests.serving.slow_model import (
    SLOW_MODEL,
    STUCK_MODEL,
    add_slow_model,
    add_stuck_model,
    repository_with_slow_model,
)

pytestmark = pytest.mark.timed  # tests/scheduling.py

IN_FLIGHT = 20
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GRACE_S = 10
# past the grace period: the gate's linger, closing the models (at least 1 s), the machine's noise
GRACE_LIMIT_SLACK_S = 3.0
LOAD_SLACK_S = 2.0  # the gate's linger, stopping the ports, the machine's noise


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


def test_a_batch_running_past_the_grace_period_cannot_hold_shutdown(tiny_model_repository, tmp_path):
    """Regression: after the drain, closing the models waited for the running batch on the loop, where
    no second signal was watched, and the process then exited 0 saying it had stopped gracefully."""
    repository = tmp_path / "models"
    shutil.copytree(tiny_model_repository, repository)
    add_stuck_model(repository)  # a long text keeps its batch running for 20 s or so
    with ServerProcess(repository, tmp_path, "--grace-period-s", "1") as server:
        call = server.stub.Classify.future(
            classifier_pb2.ClassifyRequest(model=STUCK_MODEL, texts=[LONG_TEXT]), timeout=60
        )
        deadline = time.monotonic() + 10
        while value(server.metrics_text(), "seqserve_requests_in_flight", model=STUCK_MODEL) < 1:
            assert time.monotonic() < deadline, "the request never reached the server"
            time.sleep(0.01)
        signalled = time.monotonic()
        exit_code = server.terminate(timeout=60)
        stopped_after = time.monotonic() - signalled
        assert not call.done() or call.exception() is not None
    log = server.log_path.read_text()
    assert stopped_after < 1 + GRACE_LIMIT_SLACK_S, f"shutdown took {stopped_after:.1f} s"
    assert exit_code == 1
    assert '"graceful": false' in log


def test_sigterm_while_models_load_exits_without_loading_the_rest(tiny_model_repository, tmp_path):
    """SIGTERM during start-up: the load running finishes (it runs in a thread), no other starts, and
    the server never says it is ready."""
    repository = tmp_path / "models"
    shutil.copytree(tiny_model_repository, repository)
    slow = [add_slow_model(repository, matmuls=100, name=f"sarcasm-slow-{i}") for i in range(5)]
    command = serve_command(repository, port=free_port())
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        ready_at: list[float] = []
        for line in process.stderr:
            if '"msg": "model version ready"' in line or '"msg": "listening, loading models"' in line:
                ready_at.append(time.monotonic())
            if f'"model": "{slow[0]}"' in line and '"msg": "model version ready"' in line:
                break
        load_s = ready_at[-1] - ready_at[-2]  # the first slow model's load
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
        stopped_after = time.monotonic() - signalled
    finally:
        process.kill()
        process.wait()
    loaded = [name for name in slow if f'"model": "{name}"' in stderr and "model version ready" in stderr]
    assert "seqserve-ready" not in stdout
    assert stopped_after < 1 + load_s + LOAD_SLACK_S, (
        f"stopped {stopped_after:.1f} s after SIGTERM; a load takes {load_s:.1f} s"
    )
    assert len(loaded) < len(slow) - 1, loaded
    assert process.returncode == 0
