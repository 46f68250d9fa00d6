"""`--workers 2` as a real subprocess: one port, one /metrics summing both, SIGTERM drains both, a
worker that goes away is replaced while the other serves, a replacement still loading answers
"starting", and workers outlive no supervisor. Which worker served a connection is read from /proc
(tests/serving/sockets.py). (Chaos under load, hangs and crash loops:
tests/reliability/test_worker_chaos.py.)"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from tests.reliability.conftest import NORMAL_TEXT, call_code, wait_until
from tests.reliability.test_lifecycle import publish
from tests.serving.gate import Gate
from tests.serving.metrics_text import samples, value
from tests.serving.rest_client import text_tensor
from tests.serving.server_process import REPO_ROOT, ServerProcess
from tests.serving.slow_model import repository_with_slow_model
from tests.serving.sockets import client_ports, worker_of

Result = TypeVar("Result")
CONNECTIONS = 40  # fresh connections, spread by the kernel over both workers' sockets (all on one: 2^-39)
OWN = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own, not the process's shared one
REST_INFER = "/v2/models/sarcasm-gru/infer"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def one_connection(address: str, call) -> object:
    """Run `call(channel)` on a channel of its own: a new TCP connection, so a new pick of worker."""
    with grpc.insecure_channel(address, options=OWN) as channel:
        return call(channel)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def grpc_worker(
    server: ServerProcess, workers: list[int], call: Callable[[grpc.Channel], Result]
) -> tuple[int, Result]:
    """Run `call(channel)` on a new connection; the worker that served it, and what `call` returned."""
    server_port = port_of(server.address)
    before = client_ports(server_port)
    with grpc.insecure_channel(server.address, options=OWN) as channel:
        result = call(channel)
        (client_port,) = client_ports(server_port) - before
        worker = worker_of(client_port, server_port, workers)
    assert worker is not None, f"no worker of {workers} holds the connection"
    return worker, result


def rest_worker(server: ServerProcess, workers: list[int], path: str, body: object) -> tuple[int, int, str]:
    """POST `body` to `path` on a new connection; the worker that answered, the status and the body."""
    rest_port = port_of(server.rest_url)
    connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10)
    try:
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read().decode()
        worker = worker_of(connection.sock.getsockname()[1], rest_port, workers)
    finally:
        connection.close()
    assert worker is not None, f"no worker of {workers} holds the connection"
    return worker, response.status, text


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

        served: dict[str, Counter[int]] = {"grpc": Counter(), "rest": Counter()}
        for _ in range(CONNECTIONS):
            served["grpc"][grpc_worker(server, workers, classify_and_check)[0]] += 1
            # the REST port is shared the same way
            worker, status, _ = rest_worker(
                server, workers, REST_INFER, {"inputs": [text_tensor([NORMAL_TEXT, "x"])]}
            )
            assert status == 200
            served["rest"][worker] += 1
        for protocol, counts in served.items():
            assert set(counts) == set(workers) and counts.total() == CONNECTIONS, (protocol, counts)
        text = server.metrics_text()
        requests = 2 * CONNECTIONS  # gRPC and REST, summed over both workers
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
            lambda: ("sarcasm-gru", "2", 1) in readiness(server.metrics_text()),
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
        replacement = next(pid for pid in worker_pids(server) if pid not in (first, second))
        request = classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[NORMAL_TEXT])
        body = {"inputs": [text_tensor([NORMAL_TEXT])]}
        served: dict[str, Counter[int]] = {"grpc": Counter(), "rest": Counter()}
        for _ in range(CONNECTIONS):
            classify = lambda c: classifier_pb2_grpc.ClassifierStub(c).Classify(request, timeout=10)  # noqa: E731
            served["grpc"][grpc_worker(server, [second, replacement], classify)[0]] += 1
            worker, status, _ = rest_worker(server, [second, replacement], REST_INFER, body)
            assert status == 200
            served["rest"][worker] += 1
        for protocol, counts in served.items():  # the survivor and the replacement both serve
            assert set(counts) == {second, replacement} and counts.total() == CONNECTIONS, (protocol, counts)
        assert server.terminate() == 0
    log = server.log_path.read_text()
    for line in ("worker exited; replacing it", "serving degraded: fewer workers than --workers",
                 "replacement worker started", "every worker serves again"):  # fmt: skip
        assert f'"msg": "{line}"' in log, line


def readiness(text: str) -> set[tuple[str, str, float]]:
    """(model, version, merged seqserve_model_ready) of every version on the page."""
    return {
        (labels["model"], labels["version"], ready) for labels, ready in samples(text, "seqserve_model_ready")
    }


def worker_pids(server: ServerProcess) -> list[int]:
    """Every worker the supervisor has reported ready, in order (its log's `worker ready` lines)."""
    records = (json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{"))
    return [record["pid"] for record in records if record.get("msg") == "worker ready"]


def key_values(line: str) -> dict[str, str]:
    """One line of `--log-format text` (key=value, values with spaces or `=` quoted)."""
    return dict(field.split("=", 1) for field in shlex.split(line))


def test_workers_whose_supervisor_is_killed_drain_and_exit(tiny_model_repository, tmp_path):
    with ServerProcess(tiny_model_repository, tmp_path, "--workers", "2", "--log-format", "text") as server:
        workers = server.ready["workers"]
        server.process.kill()
        wait_until(lambda: not any(alive(pid) for pid in workers), "the workers to exit", 30)
    # every process logs key=value lines (--log-format text reaches the workers), not JSON
    records = [key_values(line) for line in server.log_path.read_text().splitlines() if "msg=" in line]
    assert all({"ts", "level", "logger", "msg"} <= set(record) for record in records), records
    messages = Counter(record["msg"] for record in records)
    assert messages["listening, loading models"] == 2  # one per worker
    assert messages["worker ready"] == 2  # the supervisor's
    assert messages["the supervisor is gone; shutting down"] == 2


def test_a_worker_still_loading_answers_unavailable_starting_never_not_found(tiny_model_repository, tmp_path):
    """docs/reliability.md: a request reaching a `--workers` replacement that is still loading its models
    gets UNAVAILABLE "starting" (REST 503), even for a model it has not loaded yet; the other worker
    serves meanwhile. The replacement's warm-up of the slow model is held at the gate."""
    repository = repository_with_slow_model(tiny_model_repository, tmp_path / "models", matmuls=1)
    with (
        contextlib.closing(Gate()) as gate,
        ServerProcess(repository, tmp_path, "--workers", "2", env=gate.env) as server,
    ):
        first, second = server.ready["workers"]
        gate.hold()
        os.kill(first, signal.SIGKILL)
        warm_up = gate.next_run()  # the replacement, warming the slow model up
        loading = warm_up.pid
        assert loading not in (first, second)
        workers = [second, loading]
        request = classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[NORMAL_TEXT])
        body = {"inputs": [text_tensor([NORMAL_TEXT])]}
        grpc_answers: dict[int, list[tuple[grpc.StatusCode, str]]] = {second: [], loading: []}
        rest_answers: dict[int, list[tuple[int, str]]] = {second: [], loading: []}

        def classify(channel: grpc.Channel) -> tuple[grpc.StatusCode, str]:
            stub = classifier_pb2_grpc.ClassifierStub(channel)
            code, answer = call_code(lambda: stub.Classify(request, timeout=10))
            return code, answer.details() if code != grpc.StatusCode.OK else ""

        for _ in range(CONNECTIONS // 2):
            worker, answer = grpc_worker(server, workers, classify)
            grpc_answers[worker].append(answer)
            worker, status, text = rest_worker(server, workers, REST_INFER, body)
            rest_answers[worker].append((status, text))
        gate.open()
        warm_up.release()
        wait_until(
            lambda: value(server.metrics_text(), "seqserve_workers", state="ready") == 2, "the replacement"
        )
    assert grpc_answers[loading] and rest_answers[loading], "no connection reached the loading worker"
    for code, details in grpc_answers[loading]:
        assert code == grpc.StatusCode.UNAVAILABLE and "starting" in details, (code, details)
    for status, text in rest_answers[loading]:
        assert status == 503 and "starting" in text, (status, text)
    assert {code for code, _ in grpc_answers[second]} == {grpc.StatusCode.OK}
    assert {status for status, _ in rest_answers[second]} == {200}


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
