"""Shutdown while clients keep sending (tests/serving/test_shutdown.py covers a quiet server).

The promise: every request either completes or is refused with UNAVAILABLE without having been
accepted; an open ClassifyStream does not hold the process for the grace period; a second signal
stops at once.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import socket
import threading
import time
import urllib.parse

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve.v1 import classifier_pb2
from tests.reliability.conftest import NORMAL_TEXT, call_code, wait_until
from tests.serving.gate import Gate
from tests.serving.metrics_text import value
from tests.serving.server_process import ServerProcess
from tests.serving.slow_model import SLOW_MODEL, repository_with_slow_model

pytestmark = pytest.mark.timed  # tests/scheduling.py

CLIENTS = 6


NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
STATE_WAIT_S = 20.0  # how long a test waits for the server to reach a state before it fails


def test_sigterm_under_load_loses_no_request(tiny_model_repository, tmp_path):
    with ServerProcess(
        tiny_model_repository, tmp_path, "--log-level", "DEBUG", "--grace-period-s", "10"
    ) as server:
        outcomes: list[grpc.StatusCode] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            deadline = time.monotonic() + 30
            for n in range(100_000):
                model = ("sarcasm-gru", "sarcasm-flatten")[(index + n) % 2]
                request = classifier_pb2.ClassifyRequest(model=model, texts=[NORMAL_TEXT, f"{index}/{n}"])
                code, response = call_code(lambda r=request: server.stub.Classify(r, timeout=10))
                if code == grpc.StatusCode.OK:
                    assert len(response.predictions) == 2
                with lock:
                    outcomes.append(code)
                if code != grpc.StatusCode.OK or time.monotonic() > deadline:
                    return  # the server refused it: it is going away

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(outcomes) >= 200, "load before the signal", STATE_WAIT_S)
        server.process.send_signal(signal.SIGTERM)
        exit_code = server.process.wait(20)
        for thread in threads:
            thread.join(20)
    assert exit_code == 0
    codes = {code for code in outcomes}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    ok = outcomes.count(grpc.StatusCode.OK)
    assert outcomes.count(grpc.StatusCode.UNAVAILABLE) == CLIENTS  # each client's last request
    # every request the server accepted (logged at DEBUG as it entered a queue) was answered OK
    accepted = server.log_path.read_text().count('"msg": "classify"')
    assert accepted == ok


def test_an_open_stream_answers_what_it_read_then_ends_and_does_not_hold_shutdown(
    tiny_model_repository, tmp_path
):
    repository = repository_with_slow_model(tiny_model_repository, tmp_path / "models")
    with ServerProcess(
        repository, tmp_path, "--grace-period-s", "60", "--max-queue-delay-us", "200000"
    ) as server:
        requests: queue.Queue[classifier_pb2.ClassifyRequest | None] = queue.Queue()

        def sent():
            while (request := requests.get(timeout=60)) is not None:
                yield request

        try:
            replies = server.stub.ClassifyStream(sent(), timeout=60)
            for i in range(2):
                requests.put(classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[f"before {i}"]))
                assert len(next(replies).predictions) == 1
            for i in range(2):  # one runs (slowly), one waits in the queue when the signal arrives
                requests.put(classifier_pb2.ClassifyRequest(model=SLOW_MODEL, texts=[f"slow {i}"]))
            wait_until(
                lambda: value(server.metrics_text(), "seqserve_requests_in_flight", model=SLOW_MODEL) == 2,
                "the slow requests in flight",
                STATE_WAIT_S,
            )
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            answered = [next(replies).model for _ in range(2)]
            try:
                next(replies)
                ending = grpc.StatusCode.OK
            except grpc.RpcError as error:
                ending = error.code()
            exit_code = server.process.wait(30)
            stopped_after = time.monotonic() - signalled
        finally:
            requests.put(None)
    assert answered == [SLOW_MODEL, SLOW_MODEL]
    assert ending == grpc.StatusCode.UNAVAILABLE
    assert exit_code == 0
    assert stopped_after < 20, "the idle stream held the server for its grace period"


def test_a_second_signal_stops_at_once(tiny_model_repository, tmp_path):
    repository = repository_with_slow_model(tiny_model_repository, tmp_path / "models")
    # one slow text per batch, one batch at a time: the queued work takes far longer than the test waits;
    # the first batch is held at the gate, so that all 40 are in flight together
    with contextlib.closing(Gate()) as gate, ServerProcess(
        repository, tmp_path, "--grace-period-s", "120", "--max-batch-size", "1", "--inference-threads", "1",
        env=gate.env,
    ) as server:  # fmt: skip
        gate.hold()
        calls = [
            server.stub.Classify.future(
                classifier_pb2.ClassifyRequest(model=SLOW_MODEL, texts=[f"{i}"]), timeout=60
            )
            for i in range(40)
        ]
        gate.next_run()
        wait_until(
            lambda: value(server.metrics_text(), "seqserve_requests_in_flight", model=SLOW_MODEL) == 40,
            "queued",
            STATE_WAIT_S,
        )
        server.process.send_signal(signal.SIGTERM)
        health = health_pb2_grpc.HealthStub(server.channel)
        wait_until(
            lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == NOT_SERVING,
            "the drain to begin",
            STATE_WAIT_S,
        )
        assert server.process.poll() is None, "the first signal must wait for the queued requests"
        second = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        gate.open()  # the held batch's thread ends; the queued requests are cancelled, not run
        exit_code = server.process.wait(30)
        stopped_after = time.monotonic() - second
        codes = [call_code(call.result)[0] for call in calls]
    assert exit_code == 1
    assert stopped_after < 10
    assert codes.count(grpc.StatusCode.OK) < len(calls)
    assert "second signal" in server.log_path.read_text()


def test_a_rest_client_still_sending_its_body_does_not_hold_shutdown(tiny_model_repository, tmp_path):
    """Regression: after the grace period, the HTTP port waited aiohttp's default 60 s for such a
    request before the process could exit."""
    with ServerProcess(tiny_model_repository, tmp_path, "--grace-period-s", "1") as server:
        rest = urllib.parse.urlsplit(server.rest_url)
        with socket.create_connection((rest.hostname, rest.port), timeout=10) as client:
            client.sendall(
                b"POST /v2/models/sarcasm-gru/infer HTTP/1.1\r\nHost: seqserve\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            time.sleep(0.5)  # the server has read the headers: the request is inside the gate
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            exit_code = server.process.wait(30)
            stopped_after = time.monotonic() - signalled
    assert exit_code == 0
    assert stopped_after < 20, "the unfinished upload held the server past its grace period"
