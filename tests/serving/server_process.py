"""Runs the real server as a subprocess on free loopback ports, for integration tests (bench.harness
starts and stops it, as it does for the benchmarks)."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

import grpc
import pytest

from bench import harness
from bench.harness import REPO_ROOT, free_port
from seqserve.v1 import classifier_pb2_grpc

__all__ = ["REPO_ROOT", "ServerProcess", "free_port", "module_server"]
START_TIMEOUT_S = 90.0


class ServerProcess(harness.ServerProcess):
    """A started server; as a context manager it is killed on leaving the block, however the block ends."""

    metrics_url: str
    rest_url: str

    def __init__(
        self, repository: Path, log_dir: Path, *extra_args: str, env: Mapping[str, str] | None = None
    ) -> None:
        """Start on free ports picked here; `extra_args` may override any flag (later flags win);
        `env`: variables set for the server beside this process's (e.g. OTEL_*)."""
        port = free_port()
        command = harness.serve_command(repository, *extra_args, port=port, rest_port=free_port())
        super().__init__(command, log_dir / f"server-{port}.log", start_timeout_s=START_TIMEOUT_S, env=env)
        self.channel = grpc.insecure_channel(self.address)
        self.stub = classifier_pb2_grpc.ClassifierStub(self.channel)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()

    def _close(self) -> None:
        self.channel.close()
        super()._close()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.kill()


def module_server(logs: str, *extra_args: str) -> Callable[..., Iterator[ServerProcess]]:
    """A module-scoped fixture: a server of the test module's own on the tiny repository (its log in a
    fresh folder `logs`), for tests whose traffic or actions must not meet other modules'."""

    @pytest.fixture(scope="module")
    def fixture(
        tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[ServerProcess]:
        with ServerProcess(tiny_model_repository, tmp_path_factory.mktemp(logs), *extra_args) as process:
            yield process

    return fixture
