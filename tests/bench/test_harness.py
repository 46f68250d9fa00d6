"""bench.harness: a server is started until it says it is ready, and whatever happens it is gone after."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness import ServerProcess
from serving.announce import READY_PREFIX

READY = "json.dumps({'grpc_address': 'a:1', 'pid': os.getpid()})"
ANNOUNCE = f"import json, os; print({READY_PREFIX!r} + {READY}, flush=True)"


def test_a_server_that_ends_before_its_ready_line_fails_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('cannot bind the port', file=sys.stderr)"]
    with pytest.raises(RuntimeError, match="did not become ready") as failed:
        ServerProcess(command, tmp_path / "server.log")
    assert "cannot bind the port" in str(failed.value)


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    stubborn = (
        f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); {ANNOUNCE}; time.sleep(60)"
    )
    server = ServerProcess([sys.executable, "-c", stubborn], tmp_path / "server.log")
    assert server.pid == server.process.pid and server.address == "a:1"
    started = time.monotonic()
    server.stop(timeout=1)
    assert server.process.returncode == -signal.SIGKILL and time.monotonic() - started < 10


def test_a_probe_decides_readiness_for_a_server_without_a_ready_line(tmp_path: Path) -> None:
    marker = tmp_path / "listening"
    command = [
        sys.executable,
        "-c",
        f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(60)",
    ]

    def probe(process: subprocess.Popen[str], deadline: float) -> dict | None:
        while process.poll() is None and time.monotonic() < deadline:
            if marker.exists():
                return {"grpc_address": "b:2", "pid": process.pid}
            time.sleep(0.05)
        return None

    with ServerProcess(command, tmp_path / "server.log", probe=probe) as server:
        assert server.address == "b:2" and server.processes() == [server.process.pid]
        (rss,) = server.rss_bytes()
        assert rss > 0 and server.cpu_seconds() >= 0
    assert server.process.returncode == -signal.SIGTERM  # stopped on leaving the block
