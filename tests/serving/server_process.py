"""Runs the real server as a subprocess on free loopback ports, for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc

from seqserve.v1 import classifier_pb2_grpc
from serving.announce import read_ready_line

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A started server; as a context manager it is killed on leaving the block, however the block ends."""

    def __init__(self, repository: Path, log_dir: Path, *extra_args: str) -> None:
        """Start on free ports picked here; `extra_args` may override any flag (later flags win)."""
        port = free_port()
        self.log_path = log_dir / f"server-{port}.log"
        command = [
            sys.executable, "-m", "seqserve.cli", "serve",
            "--model-repository", str(repository), "--host", "127.0.0.1",
            "--port", str(port), "--rest-port", str(free_port()), "--metrics-port", str(free_port()),
            *extra_args,
        ]  # fmt: skip
        self._log = self.log_path.open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env
        )
        self.ready = self._wait_ready()
        self.address = self.ready["grpc_address"]
        self.metrics_url = self.ready["metrics_url"]
        self.rest_url = self.ready["rest_url"]
        self.channel = grpc.insecure_channel(self.address)
        self.stub = classifier_pb2_grpc.ClassifierStub(self.channel)

    def _wait_ready(self) -> dict:
        assert self.process.stdout is not None
        ready = read_ready_line(self.process.stdout, START_TIMEOUT_S)
        if ready is not None:
            return ready
        self.process.kill()
        self.process.wait(10)
        self._log.close()
        raise RuntimeError(f"server did not become ready; log:\n{self.log_path.read_text()[-4000:]}")

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.channel.close()
            self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()

    def kill(self) -> None:
        """Stop at once; harmless after `terminate()` or a previous `kill()`."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.channel.close()
        self._log.close()
