"""`--workers 2` as a real subprocess: one port, one /metrics summing both, SIGTERM drains both, a
worker that goes away is replaced while the other serves, and workers outlive no supervisor.
(Chaos under load, hangs and crash loops: tests/reliability/test_worker_chaos.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from tests.reliability.conftest import NORMAL_TEXT, call_code, wait_until
from tests.reliability.test_lifecycle import publish
from tests.serving.metrics_text import value
from tests.serving.rest_client import call, text_tensor
from tests.serving.server_process import REPO_ROOT, ServerProcess

CONNECTIONS = 40  # fresh connections, spread by the kernel over both workers' sockets


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def one_connection(address: str, call) -> object:
    """Run `call(channel)` on a channel of its own: a new TCP connection, so a new pick of worker."""
    with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return call(channel)


def test_two_workers_serve_one_port_and_one_metrics_page_sums_them(tiny_model_repository, tmp_path):
    with ServerProcess(tiny_model_repository, tmp_path, "--workers", "2") as server:
        workers = server.ready["workers"]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        assert server.ready["pid"] not in workers

        def classify_and_check(channel: grpc.Channel) -> None:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            ready = service_pb2_grpc.GRPCInferenceServiceStub(channel).ServerReady(
                service_pb2.ServerReadyRequest(), timeout=10
            )
            assert ready.ready
            request = classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[NORMAL_TEXT, "x"])
            assert (
                len(classifier_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=10).predictions)
                == 2
            )

        rest_infer = f"{server.rest_url}/v2/models/sarcasm-gru/infer"
        for _ in range(CONNECTIONS):
            one_connection(server.address, classify_and_check)
            # the REST port is shared the same way (urllib opens a connection per call)
            assert call(rest_infer, {"inputs": [text_tensor([NORMAL_TEXT, "x"])]}).status == 200
        text = server.metrics_text()
        # with 40 connections, both workers served some (all on one: p = 2^-39); only the sum is exact
        requests = 2 * CONNECTIONS  # gRPC and REST
        assert value(text, "seqserve_requests_total", model="sarcasm-gru", code="OK") == requests
        assert value(text, "seqserve_texts_total", model="sarcasm-gru", code="OK") == 2 * requests
        assert value(text, "seqserve_request_duration_seconds_count", model="sarcasm-gru") == requests
        assert value(text, "seqserve_batch_size_sum", model="sarcasm-gru") == 2 * requests
        assert value(text, "seqserve_model_ready", model="sarcasm-gru") == 1  # ready in both: min, not sum
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server.metrics_url.removesuffix("/metrics") + "/other", timeout=10)
        assert server.terminate() == 0
        assert not any(alive(pid) for pid in workers)


def test_every_worker_polls_the_repository_and_takes_a_new_version(tiny_model_repository, tmp_path):
    repository = tmp_path / "models"
    shutil.copytree(tiny_model_repository, repository)
    with ServerProcess(repository, tmp_path, "--workers", "2", "--poll-interval", "0.2") as server:
        publish(repository, "sarcasm-gru", 2)
        # the merged readiness is the minimum over the workers: 1 once both have loaded version 2
        wait_until(
            lambda: (
                value(server.metrics_text(), "seqserve_model_ready", model="sarcasm-gru", version="2") == 1
            ),
            "version 2 ready in both workers",
        )
        request = classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[NORMAL_TEXT])
        versions = {
            one_connection(
                server.address, lambda c: classifier_pb2_grpc.ClassifierStub(c).Classify(request).version
            )
            for _ in range(CONNECTIONS)
        }
        assert versions == {2}
        assert server.terminate() == 0


def test_sigterm_drains_every_worker_and_loses_no_request(tiny_model_repository, tmp_path):
    with ServerProcess(
        tiny_model_repository, tmp_path, "--workers", "2", "--log-level", "DEBUG", "--grace-period-s", "10"
    ) as server:
        outcomes: list[grpc.StatusCode] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            with grpc.insecure_channel(server.address, options=[("seqserve.test.client", index)]) as channel:
                stub = classifier_pb2_grpc.ClassifierStub(channel)
                deadline = time.monotonic() + 30
                for n in range(100_000):
                    request = classifier_pb2.ClassifyRequest(model="sarcasm-flatten", texts=[f"{index}/{n}"])
                    code, _ = call_code(lambda r=request: stub.Classify(r, timeout=10))
                    with lock:
                        outcomes.append(code)
                    if code != grpc.StatusCode.OK or time.monotonic() > deadline:
                        return

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(6)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(outcomes) >= 200, "load before the signal")
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(30)
        for thread in threads:
            thread.join(20)
    assert exit_code == 0
    assert set(outcomes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, set(outcomes)
    # both workers log every request they accept; each of those was answered OK
    log = server.log_path.read_text()
    assert log.count('"msg": "classify"') == outcomes.count(grpc.StatusCode.OK)
    assert log.count('"msg": "stopped", "graceful": true') == 2


def workers_in(server: ServerProcess, state: str) -> float:
    return value(server.metrics_text(), "seqserve_workers", state=state)


def restarts(server: ServerProcess, reason: str) -> float:
    return value(server.metrics_text(), "seqserve_worker_restarts_total", reason=reason)


def test_a_worker_that_dies_is_replaced_while_the_other_serves(tiny_model_repository, tmp_path):
    with ServerProcess(tiny_model_repository, tmp_path, "--workers", "2") as server:
        first, second = server.ready["workers"]
        assert (workers_in(server, "ready"), restarts(server, "exit")) == (2, 0)
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: restarts(server, "exit") == 1, "the exit to be counted", 30)
        # while the replacement loads: the other worker answers health and requests, and the
        # merged readiness is that of the serving worker, not pulled down by the one starting
        for _ in range(10):
            one_connection(
                server.address,
                lambda c: health_pb2_grpc.HealthStub(c).Check(health_pb2.HealthCheckRequest(), timeout=10),
            )
        wait_until(lambda: workers_in(server, "ready") == 2, "the replacement to serve", 60)
        assert value(server.metrics_text(), "seqserve_model_ready", model="sarcasm-gru") == 1
        assert alive(second) and not alive(first)
        request = classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[NORMAL_TEXT])
        for _ in range(CONNECTIONS):  # both workers serve (p of all on one: 2^-39)
            one_connection(server.address, lambda c: classifier_pb2_grpc.ClassifierStub(c).Classify(request))
        assert server.terminate() == 0
    log = server.log_path.read_text()
    for line in ("worker exited; replacing it", "serving degraded: fewer workers than --workers",
                 "replacement worker started", "every worker serves again"):  # fmt: skip
        assert f'"msg": "{line}"' in log, line


def test_workers_whose_supervisor_is_killed_drain_and_exit(tiny_model_repository, tmp_path):
    with ServerProcess(tiny_model_repository, tmp_path, "--workers", "2") as server:
        workers = server.ready["workers"]
        server.process.kill()
        wait_until(lambda: not any(alive(pid) for pid in workers), "the workers to exit", 30)
    assert server.log_path.read_text().count('"msg": "the supervisor is gone; shutting down"') == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--workers", "0"], "--workers='0': 0 is not positive"),
        (["--workers", "-2"], "--workers='-2': -2 is not positive"),
        (["--workers", "two"], "--workers='two': 'two' is not a whole number"),
        (["--workers", "2", "--model-control", "explicit"], "--workers above 1 and --model-control explicit"),
    ],
)
def test_bad_worker_counts_are_refused_at_start_up(tmp_path, arguments, message):
    command = [sys.executable, "-m", "seqserve.cli", "serve", "--model-repository", str(tmp_path), *arguments]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr


def test_a_lone_server_refuses_a_port_another_server_holds(tiny_model_repository, tmp_path):
    """Regression: gRPC sets SO_REUSEPORT by default, so a second server on a taken port started and
    silently took half of the first one's connections; only `--workers` shares a port now."""
    with ServerProcess(tiny_model_repository, tmp_path) as first:
        port = first.address.rsplit(":", 1)[1]
        command = [
            sys.executable, "-m", "seqserve.cli", "serve", "--model-repository", str(tiny_model_repository),
            "--port", port, "--metrics-port", "0", "--rest-port", "0",
        ]  # fmt: skip
        second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "start-up failed" in second.stderr
        assert first.process.poll() is None


def test_the_supervisor_imports_no_grpc_asyncio_metrics_library_or_runtime():
    heavy = ("grpc", "asyncio", "prometheus_client", "aiohttp", "numpy", "onnxruntime", "google.protobuf")
    code = f"import sys, serving.supervisor; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
