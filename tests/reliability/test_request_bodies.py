"""REST request bodies a hostile client shapes: compressed bodies that unzip far beyond the limit, and
bodies sent a byte at a time. Each costs only its own connection: it is refused after at most the
limit's worth of unzipped bytes (and no Python loop over them), or closed at the body time limit."""

from __future__ import annotations

import contextlib
import gzip
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.hostile_bodies import compressed, post
from bench.proc import process_cpu_seconds
from tests.reliability.conftest import NORMAL_TEXT
from tests.serving.rest_client import text_tensor
from tests.serving.server_process import ServerProcess

pytestmark = pytest.mark.timed  # tests/scheduling.py

BODY_TIMEOUT_S = 2.0
SLACK_S = 1.5  # scheduling on a shared machine, the server's timer granularity
INFER = "/v2/models/sarcasm-gru/infer"
BODIES = 5


@pytest.fixture(scope="module")
def server(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # the body time limit as an environment variable: a server that does not know it still starts
    env = {"SEQSERVE_REST_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}
    with ServerProcess(tiny_model_repository, tmp_path_factory.mktemp("bodies"), env=env) as process:
        yield process


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_body_unzipping_far_beyond_the_limit_is_refused_after_unzipping_at_most_the_limit(server, encoding):
    """1 GiB of zeros in about 1 MB, from a client that keeps its connection open after the answer:
    unzipping it all would take the server seconds of CPU."""
    bomb = compressed(1 << 30, encoding, filler=b"0")
    host, port = server.rest_address.rsplit(":", 1)
    before = process_cpu_seconds(server.pid)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Encoding: {encoding}\r\n"
        head += f"Content-Length: {len(bomb)}\r\n\r\n"

        def send() -> None:
            with contextlib.suppress(OSError):  # the server may close before the whole body is sent
                sock.sendall(head.encode() + bomb)

        sender = threading.Thread(target=send)
        sender.start()
        answer = b""
        with contextlib.suppress(OSError):
            while b"}" not in answer and (data := sock.recv(65536)):
                answer += data
        time.sleep(2)  # the connection stays open: whatever the server does meanwhile counts too
        spent = process_cpu_seconds(server.pid) - before
    sender.join(10)
    assert answer.split(b" ", 2)[1] in (b"400", b"413"), answer[:300]
    assert b"--max-message-bytes" in answer
    print(f"\n{encoding}: {spent:.3f} s of server CPU")
    assert spent < 0.3, f"the server spent {spent:.2f} s of CPU on one compressed body"
    good = json.dumps({"inputs": [text_tensor([NORMAL_TEXT])]}).encode()  # within the limit: served
    assert post(server.rest_address, INFER, gzip.compress(good), "gzip")[0] == 200


def test_a_compressed_body_within_the_limit_costs_the_server_no_walk_over_its_bytes(server):
    """Regression: the strict-JSON depth check walked every byte in Python, so 4 MB of whitespace in a
    4 KB gzip body held the server's loop for a quarter of a second. Now it costs the unzipping and
    checks at C speed. (The health checks' p99 under 20 such bodies a second, bench/hostile_bodies.py,
    is a figure for a quiet machine.)"""
    body = compressed(4_000_000, "gzip")
    before = process_cpu_seconds(server.pid)
    statuses = [post(server.rest_address, INFER, body, "gzip")[0] for _ in range(BODIES)]
    per_body = (process_cpu_seconds(server.pid) - before) / BODIES
    print(f"\n{per_body * 1000:.0f} ms of server CPU per body")
    assert statuses == [400] * BODIES
    assert per_body < 0.06, f"the server spent {per_body * 1000:.0f} ms of CPU per body"


def drip(sock: socket.socket, interval_s: float, limit_s: float) -> tuple[float, bytes]:
    """Send a body byte every `interval_s`; (seconds until the server closed, what it answered)."""
    sock.settimeout(interval_s)
    began = time.monotonic()
    answer = b""
    while time.monotonic() - began < limit_s:
        try:
            sock.sendall(b" ")
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        answer += data
    return time.monotonic() - began, answer


def test_a_body_dripping_a_byte_at_a_time_is_closed_at_the_body_time_limit(server):
    host, port = server.rest_address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
        closed_after, answer = drip(sock, 0.5, BODY_TIMEOUT_S + SLACK_S + 10)
    assert closed_after <= BODY_TIMEOUT_S + SLACK_S, f"still open after {closed_after:.1f} s"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"--rest-body-timeout-s" in answer


def test_a_body_still_arriving_does_not_hold_the_drain(tiny_model_repository, tmp_path):
    grace_s = 15
    env = {"SEQSERVE_REST_BODY_TIMEOUT_S": "60"}
    with ServerProcess(tiny_model_repository, tmp_path, "--grace-period-s", str(grace_s), env=env) as server:
        host, port = server.rest_address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
            time.sleep(0.5)  # the server has read the head: the request is inside the gate
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            _, answer = drip(sock, 0.2, grace_s + 5)
            exit_code = server.process.wait(grace_s + 10)
            stopped_after = time.monotonic() - signalled
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    assert exit_code == 0
    assert stopped_after < 5, f"the unfinished body held shutdown for {stopped_after:.1f} s"


def test_a_plain_body_over_the_limit_is_413_and_the_server_keeps_serving(server):
    status, body = post(server.rest_address, INFER, b" " * (5 << 20), "identity")
    assert status == 413 and b"--max-message-bytes" in body, body[:300]
    good = json.dumps({"inputs": [text_tensor([NORMAL_TEXT])]}).encode()
    assert post(server.rest_address, INFER, good, "identity")[0] == 200
