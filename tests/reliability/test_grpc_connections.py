"""The gRPC port's connection limits, all grpc core channel arguments (serving/grpc_options.py): idle
and aged connections get GOAWAY (clients reconnect without a failed call), a ping flood gets GOAWAY
"too_many_pings", and connections beyond --grpc-max-connections are closed as they are accepted (on
the REST port too, --rest-max-connections)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from tests.reliability.conftest import NORMAL_TEXT, call_code, wait_until
from tests.serving.rest_client import call
from tests.serving.server_process import ServerProcess

MAX_CONNECTIONS = 8
OWN = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own, not the process's shared one


@pytest.fixture(scope="module")
def server(tiny_model_repository, tmp_path_factory) -> Iterator[ServerProcess]:
    with ServerProcess(
        tiny_model_repository, tmp_path_factory.mktemp("grpc-connections"),
        "--grpc-max-connection-idle-s", "1", "--grpc-max-connection-age-s", "5",
        "--grpc-max-connection-age-grace-s", "2", "--grpc-max-connections", str(MAX_CONNECTIONS),
        "--rest-max-connections", str(MAX_CONNECTIONS),
    ) as process:  # fmt: skip
        yield process


class States:
    """The connectivity states a channel goes through."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.seen: list[grpc.ChannelConnectivity] = []
        self._lock = threading.Lock()
        channel.subscribe(self._record, try_to_connect=False)

    def _record(self, state: grpc.ChannelConnectivity) -> None:
        with self._lock:
            self.seen.append(state)

    def last(self) -> grpc.ChannelConnectivity | None:
        with self._lock:
            return self.seen[-1] if self.seen else None

    def count(self, state: grpc.ChannelConnectivity) -> int:
        with self._lock:
            return self.seen.count(state)


def classify(channel: grpc.Channel) -> grpc.StatusCode:
    request = classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[NORMAL_TEXT])
    code, _ = call_code(lambda: classifier_pb2_grpc.ClassifierStub(channel).Classify(request, timeout=10))
    return code


def test_an_idle_connection_is_closed_and_the_next_call_reconnects(server):
    with grpc.insecure_channel(server.address, options=OWN) as channel:
        states = States(channel)
        assert classify(channel) == grpc.StatusCode.OK
        wait_until(lambda: states.last() == grpc.ChannelConnectivity.IDLE, "the idle GOAWAY", 10)
        assert classify(channel) == grpc.StatusCode.OK


def test_an_aged_busy_connection_is_replaced_without_a_failed_call(server):
    with grpc.insecure_channel(server.address, options=OWN) as channel:
        states = States(channel)
        codes = []
        deadline = time.monotonic() + 7  # past the 5 s age, never idle for 1 s
        while time.monotonic() < deadline:
            codes.append(classify(channel))
            time.sleep(0.05)
    assert set(codes) == {grpc.StatusCode.OK}
    assert states.count(grpc.ChannelConnectivity.READY) >= 2  # it connected again


def test_a_ping_flood_gets_goaway_and_the_server_serves_on(server):
    flood = [
        *OWN,
        ("grpc.keepalive_time_ms", 200),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    with grpc.insecure_channel(server.address, options=flood) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=20)
        code, error = call_code(lambda: list(watch))
    assert code == grpc.StatusCode.UNAVAILABLE and "Too many pings" in error.details()
    with grpc.insecure_channel(server.address, options=OWN) as channel:
        assert classify(channel) == grpc.StatusCode.OK


@pytest.mark.parametrize("port", ["grpc", "rest"])
def test_connections_beyond_the_cap_are_closed_at_once(server, port):
    number = int((server.address if port == "grpc" else server.rest_url).rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", number)) for _ in range(12)]
    time.sleep(1.0)
    closed = 0
    for sock in held:
        sock.settimeout(0.05)
        try:
            closed += sock.recv(1) == b""
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed += 1
    for sock in held:
        sock.close()
    assert closed >= 12 - MAX_CONNECTIONS
    with grpc.insecure_channel(server.address, options=OWN) as channel:
        wait_until(lambda: classify(channel) == grpc.StatusCode.OK, "a connection under the cap", 15)
    assert call(f"{server.rest_url}/v2/health/ready").status == 200
