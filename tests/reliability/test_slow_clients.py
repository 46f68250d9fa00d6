"""Slow, idle and hostile connections: half-open connections on the gRPC and REST ports, slowloris
clients and a connection flood on /metrics. Each is closed by the server within its timeout, and
health checks stay fast meanwhile."""

from __future__ import annotations

import contextlib
import http.client
import resource
import selectors
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.reliability.conftest import wait_until
from tests.serving.server_process import ServerProcess
from tests.serving.sockets import accepted

pytestmark = pytest.mark.timed  # tests/scheduling.py

HALF_OPEN = 3000
TIMEOUT_S = 2.0
SLACK_S = 1.5  # scheduling on a shared machine, the server's timer granularity
HEALTH_P99_S = 0.050  # or 3 times the p99 of the same checks just before, on a busy shared machine


@pytest.fixture(scope="module")
def server(tiny_model_repository, tmp_path_factory) -> Iterator[ServerProcess]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 4 * HALF_OPEN + 1024)  # the server inherits it too
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    with ServerProcess(
        tiny_model_repository, tmp_path_factory.mktemp("slow-clients"),
        "--grpc-handshake-timeout-s", str(TIMEOUT_S), "--rest-keepalive-timeout-s", str(TIMEOUT_S),
        "--rest-max-connections", str(2 * HALF_OPEN),
        "--metrics-head-timeout-s", str(TIMEOUT_S), "--metrics-max-connections", "4",
    ) as process:  # fmt: skip
        yield process


def port_of(url_or_address: str) -> int:
    return int(url_or_address.rstrip("/").split("/")[2 if "//" in url_or_address else 0].rsplit(":", 1)[1])


def open_half(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if first_bytes:
            sock.sendall(first_bytes)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def closed_within(sockets: list[socket.socket], limit_s: float, during: Callable[[], None]) -> float:
    """Seconds until the server has closed every socket (EOF or reset); runs `during()` meanwhile."""
    began = time.monotonic()
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    open_count, last = len(sockets), 0.0
    while open_count:
        during()
        assert time.monotonic() - began < limit_s, f"{open_count} of {len(sockets)} still open"
        for key, _ in selector.select(0.01):
            sock = key.fileobj
            try:
                data = sock.recv(65536)  # type: ignore[union-attr]
            except (ConnectionResetError, BlockingIOError) as error:
                if isinstance(error, BlockingIOError):
                    continue
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                open_count -= 1
                last = time.monotonic() - began
    selector.close()
    return last


def drip_until_closed(sock: socket.socket, head: bytes) -> float | None:
    """Send `head` a byte every 0.25 s; the seconds until the server closed the connection (None if
    it never did)."""
    sock.settimeout(0.25)
    began = time.monotonic()
    for byte in head:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1) == b"":
                return time.monotonic() - began
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - began
    return None


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def timed_rest_health_check(connection: http.client.HTTPConnection) -> float:
    """Seconds one REST readiness check took (it must answer 200)."""
    start = time.monotonic()
    connection.request("GET", "/v2/health/ready")
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    return time.monotonic() - start


def health_p99_bound(check: Callable[[], None], latencies: list[float]) -> float:
    """Run `check` 200 times; the p99 bound while the connections are open: HEALTH_P99_S, unless the
    machine's own noise is larger (3 times the p99 of these checks)."""
    for _ in range(200):
        check()
    baseline = p99(latencies)
    latencies.clear()
    return max(HEALTH_P99_S, 3 * baseline)


@pytest.mark.alone  # its health checks' p99 against their p99 just before
def test_half_open_grpc_connections_are_closed_within_the_handshake_timeout(server):
    channel = grpc.insecure_channel(server.address)
    health = health_pb2_grpc.HealthStub(channel)
    health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    latencies: list[float] = []

    def check() -> None:
        start = time.monotonic()
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1
        latencies.append(time.monotonic() - start)

    bound = health_p99_bound(check, latencies)
    began = time.monotonic()
    sockets = open_half(port_of(server.address), HALF_OPEN, b"PRI * HTTP/2.0\r\n")  # part of the preface

    last = closed_within(sockets, time.monotonic() - began + TIMEOUT_S + SLACK_S + 5, check)
    channel.close()
    print(f"\ngRPC: {HALF_OPEN} half-open closed by {last:.2f} s; health p99 {p99(latencies) * 1000:.1f} ms")
    assert last <= TIMEOUT_S + SLACK_S
    assert p99(latencies) < bound


@pytest.mark.alone  # its health checks' p99 against their p99 just before
def test_half_open_rest_connections_are_closed_within_the_keepalive_timeout(server):
    rest = http.client.HTTPConnection("127.0.0.1", port_of(server.rest_url), timeout=10)
    latencies: list[float] = []

    def check() -> None:
        latencies.append(timed_rest_health_check(rest))

    bound = health_p99_bound(check, latencies)
    sockets = open_half(port_of(server.rest_url), HALF_OPEN, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n")
    rest.close()  # idle while the sockets opened, perhaps past the keep-alive timeout: connect anew
    last = closed_within(sockets, TIMEOUT_S + SLACK_S + 5, check)
    rest.close()
    print(f"\nREST: {HALF_OPEN} half-open closed by {last:.2f} s; health p99 {p99(latencies) * 1000:.1f} ms")
    assert last <= TIMEOUT_S + SLACK_S
    assert p99(latencies) < bound


def test_metrics_closes_slow_clients_at_the_head_timeout_and_refuses_beyond_its_cap(server):
    port = port_of(server.metrics_url)
    drip = socket.create_connection(("127.0.0.1", port), timeout=10)
    held = open_half(port, 3, b"GET /metrics HTTP/1.1\r\n")  # with the drip: the cap of 4
    wait_until(lambda: accepted(server.pid, port) == 4, "the server to accept the four")
    began = time.monotonic()
    beyond = open_half(port, 1, b"")
    assert closed_within(beyond, 1.0, lambda: None) < 1.0  # over the cap: closed at once
    # a client sending a byte now and then is cut off at the deadline all the same
    closed_at = drip_until_closed(drip, b"GET /metrics HTTP/1.1\r\nHost: slowly\r\n")
    assert closed_at is not None and time.monotonic() - began <= TIMEOUT_S + SLACK_S
    closed_within(held, TIMEOUT_S + SLACK_S, lambda: None)
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:  # served again
        assert b"seqserve_requests" in response.read()


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v2/models/sarcasm-gru/infer", "inputs"),
        ("/v2/repository/index", "ready"),
        ("/v1/compare", "texts"),
        ("/v1/explain", "text"),
        ("/v1/models/sarcasm-gru:explain", "instances"),
    ],
)
def test_a_body_nested_100000_levels_deep_is_400_not_500(server, path, field):
    """Regression: Python's JSON parser hit its recursion limit and the server answered 500; every
    REST route reads its body through serving/protocol/strict_json.py."""
    body = b'{"' + field.encode() + b'": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    request = urllib.request.Request(server.rest_url + path, data=body)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert "deeper than 64 levels" in refused.value.read().decode()


def test_a_200_kb_header_is_400_and_the_server_keeps_serving(server):
    sock = socket.create_connection(("127.0.0.1", port_of(server.rest_url)), timeout=10)
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):  # it may answer before the end
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
    assert sock.recv(64).split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    sock.close()
    with urllib.request.urlopen(f"{server.rest_url}/v2/health/ready", timeout=10) as response:
        assert response.status == 200


def test_a_rest_client_dripping_its_head_is_cut_off_at_the_keepalive_timeout(server):
    """Data that does not complete the head does not re-arm the timer (a slowloris client)."""
    drip = socket.create_connection(("127.0.0.1", port_of(server.rest_url)), timeout=10)
    closed_at = drip_until_closed(
        drip, b"GET /v2/health/ready HTTP/1.1\r\nHost: slowly\r\nX-Pad: " + b"a" * 100
    )
    drip.close()
    assert closed_at is not None and closed_at <= TIMEOUT_S + SLACK_S
