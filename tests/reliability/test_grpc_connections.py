"""The gRPC port's connection limits, all grpc core channel arguments (serving/grpc_options.py): idle
and aged connections get GOAWAY (clients reconnect without a failed call; a call still running on an
aged connection gets the grace period), a ping flood gets GOAWAY "too_many_pings" after exactly the
strikes it is allowed, calls beyond --grpc-max-concurrent-streams wait for a stream, and connections
beyond --grpc-max-connections are closed as they are accepted (on the REST port too,
--rest-max-connections).

Each limit is set to a value other than the server's default and grpc core's, on a server where no
other limit could have the same effect: the idle connection's server never ages connections, the aged
one never closes idle ones."""

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
from tests.reliability.http2_frames import DATA, ENHANCE_YOUR_CALM, GoAway, Http2Connection
from tests.serving.rest_client import call
from tests.serving.server_process import ServerProcess

pytestmark = pytest.mark.timed  # tests/scheduling.py

MAX_CONNECTIONS = 8
MAX_STREAMS = 2
# Keep-alive enforcement, both unlike the defaults (10 s, 2 strikes) and grpc core's (5 min, 2 strikes).
MIN_PING_INTERVAL_S = 0.3
PING_STRIKES = 3
AGE_S, AGE_GRACE_S = 2.0, 1.0
DEFAULT_AGE_GRACE_S = 10.0  # the server's, were --grpc-max-connection-age-grace-s ignored
OWN = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own, not the process's shared one
WATCH = "/grpc.health.v1.Health/Watch"


@pytest.fixture(scope="module")
def server(tiny_model_repository, tmp_path_factory) -> Iterator[ServerProcess]:
    """Idle connections closed after 1 s; connections never aged."""
    with ServerProcess(
        tiny_model_repository, tmp_path_factory.mktemp("grpc-connections"),
        "--grpc-max-connection-idle-s", "1", "--grpc-max-connections", str(MAX_CONNECTIONS),
        "--rest-max-connections", str(MAX_CONNECTIONS), "--grpc-max-concurrent-streams", str(MAX_STREAMS),
        "--grpc-min-ping-interval-s", str(MIN_PING_INTERVAL_S), "--grpc-max-ping-strikes", str(PING_STRIKES),
    ) as process:  # fmt: skip
        yield process


@pytest.fixture(scope="module")
def aged_server(tiny_model_repository, tmp_path_factory) -> Iterator[ServerProcess]:
    """Connections aged after 2 s (calls on them get 1 s more); idle ones kept (the default 10 min)."""
    with ServerProcess(
        tiny_model_repository, tmp_path_factory.mktemp("grpc-aged-connections"),
        "--grpc-max-connection-age-s", str(AGE_S), "--grpc-max-connection-age-grace-s", str(AGE_GRACE_S),
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


def test_an_aged_busy_connection_is_replaced_without_a_failed_call(aged_server):
    with grpc.insecure_channel(aged_server.address, options=OWN) as channel:
        states = States(channel)
        codes = []
        while states.count(grpc.ChannelConnectivity.READY) < 2:  # until it has connected again
            assert len(codes) < 2000, "the aged connection was never replaced"
            codes.append(classify(channel))
            time.sleep(0.01)
    assert set(codes) == {grpc.StatusCode.OK}


def test_a_call_on_an_aged_connection_gets_the_grace_period_then_the_connection_closes(aged_server):
    with grpc.insecure_channel(aged_server.address, options=OWN) as channel:
        began = time.monotonic()
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        code, _ = call_code(lambda: list(watch))  # a stream that never ends of itself
        lasted = time.monotonic() - began
    assert code == grpc.StatusCode.UNAVAILABLE
    # grpc core jitters the age by up to 10 %; the grace begins at the GOAWAY
    assert 0.9 * AGE_S + AGE_GRACE_S <= lasted < DEFAULT_AGE_GRACE_S, lasted


def watching(port: int) -> Http2Connection:
    """A bare HTTP/2 connection with a Health.Watch call open (pings on a connection without calls are
    judged by a stricter rule), its first answer read."""
    connection = Http2Connection(port)
    connection.open_call(1, WATCH, b"")
    assert not isinstance(connection.until(DATA, stream=1), GoAway)
    return connection


def test_a_ping_flood_gets_goaway_after_the_allowed_strikes_and_the_server_serves_on(server):
    connection = watching(port_of(server.address))
    try:
        acknowledged = 0
        while not isinstance(answer := connection.ping(acknowledged + 1), GoAway):
            acknowledged += 1
            assert acknowledged <= 2 * PING_STRIKES + 2, "no GOAWAY"
    finally:
        connection.close()
    assert (answer.error_code, answer.debug) == (ENHANCE_YOUR_CALM, b"too_many_pings")
    # the first ping is free; each after it, sooner than the interval, is a strike; the one over
    # --grpc-max-ping-strikes is still acknowledged, then GOAWAY follows
    assert acknowledged == PING_STRIKES + 2
    with grpc.insecure_channel(server.address, options=OWN) as channel:
        assert classify(channel) == grpc.StatusCode.OK


def test_pings_further_apart_than_the_minimum_interval_are_no_strikes(server):
    connection = watching(port_of(server.address))
    try:
        for opaque in range(1, PING_STRIKES + 4):
            assert not isinstance(connection.ping(opaque), GoAway), opaque
            time.sleep(2 * MIN_PING_INTERVAL_S)  # the pace under test, not a wait for an event
    finally:
        connection.close()


def test_calls_beyond_the_concurrent_streams_wait_for_a_stream(server):
    with grpc.insecure_channel(server.address, options=OWN) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest(), timeout=30) for _ in range(MAX_STREAMS)]
        for watch in watches:
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        code, _ = call_code(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED  # no stream for it while both watches run
        watches[0].cancel()
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
        watches[1].cancel()


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


@pytest.mark.parametrize("port", ["grpc", "rest"])
def test_connections_beyond_the_cap_are_closed_at_once(server, port):
    number = port_of(server.address if port == "grpc" else server.rest_url)
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
