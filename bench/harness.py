"""Server processes for the benchmarks and the integration tests: free loopback ports, start until
ready, /proc readings of the whole process tree, and a stop that cannot leave a process behind.

A server is ready when it prints the `seqserve-ready {json}` line (`seqserve serve`, bench/echo_server.py)
or, for a peer that prints none (KServe), when a readiness probe handed in says so.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from bench.proc import process_tree, rss_bytes, tree_cpu_seconds
from serving.announce import read_ready_line

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
LOG_DIR = Path(os.environ.get("TMPDIR", "/tmp"))
LOG_TAIL_CHARS = 4000


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# A readiness probe for a server that prints no ready line: (process, monotonic deadline) -> the JSON a
# ready line would have held (grpc_address, pid), or None when the server did not become ready.
ReadyProbe = Callable[[subprocess.Popen[str], float], dict | None]


def serve_command(
    repository: Path, *extra: str, port: int, rest_port: int = 0, module: str = "seqserve.cli"
) -> list[str]:
    """`seqserve serve` on loopback (REST port 0: any free one), /metrics on a free port; `extra` flags
    win over these. `module`: what runs the `seqserve` command line (bench.traced_server wraps it)."""
    return [
        sys.executable, "-m", module, "serve", "--model-repository", str(repository),
        "--host", "127.0.0.1", "--port", str(port), "--rest-port", str(rest_port),
        "--metrics-port", str(free_port()), *extra,
    ]  # fmt: skip


class ServerProcess:
    """A started server; as a context manager it is stopped (SIGTERM, then SIGKILL) on leaving the block.

    `cwd`: the source tree whose modules `python -m` runs (another checkout for an A/B); `env`: variables
    set for the server beside this process's (e.g. OTEL_*); `stdin`: what the server reads (inherited
    by default; subprocess.PIPE for a server that takes commands, bench.traced_server).
    """

    def __init__(
        self,
        command: Sequence[str],
        log_path: Path,
        *,
        cwd: Path = REPO_ROOT,
        start_timeout_s: float = START_TIMEOUT_S,
        probe: ReadyProbe | None = None,
        env: Mapping[str, str] | None = None,
        stdin: int | None = None,
    ) -> None:
        self.log_path = log_path
        self._log: IO[str] = log_path.open("w")
        self.process = subprocess.Popen(
            list(command), cwd=cwd, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=stdin, stdout=self._log if probe else subprocess.PIPE,
            stderr=subprocess.STDOUT if probe else self._log,
        )  # fmt: skip
        try:
            ready = self._wait_ready(start_timeout_s, probe)
        except BaseException:
            self._abandon()
            raise
        if ready is None:
            self._abandon()
            raise RuntimeError(
                f"{' '.join(command[:4])} did not become ready; log {log_path}:\n"
                f"{log_path.read_text()[-LOG_TAIL_CHARS:]}"
            )
        self.ready: dict = ready
        self.pid = int(ready.get("pid", self.process.pid))
        self.address: str = ready["grpc_address"]
        self.metrics_url: str | None = ready.get("metrics_url") or None
        self.rest_url: str | None = ready.get("rest_url") or None

    def _wait_ready(self, timeout_s: float, probe: ReadyProbe | None) -> dict | None:
        if probe is not None:
            return probe(self.process, time.monotonic() + timeout_s)
        assert self.process.stdout is not None
        return read_ready_line(self.process.stdout, timeout_s)

    @property
    def rest_address(self) -> str:
        """host:port of the REST port; "" when the server has none (the echo service)."""
        return urllib.parse.urlsplit(self.rest_url).netloc if self.rest_url else ""

    def processes(self) -> list[int]:
        """The server and its workers (`--workers`), parents first."""
        return process_tree(self.pid)

    def cpu_seconds(self) -> float:
        """CPU time of every process of the server, all threads."""
        return tree_cpu_seconds(self.pid)

    def rss_bytes(self) -> list[int]:
        """Resident memory of each process of the server, in the order of `processes()`."""
        return [rss_bytes(pid) for pid in self.processes()]

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit code (raises TimeoutExpired if it does not end in time)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        finally:
            self._close()

    def kill(self) -> None:
        """Stop at once; harmless after `terminate()`, `stop()` or a previous `kill()`."""
        self._kill_process()
        self._close()

    def _kill_process(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def _abandon(self) -> None:
        """A start that failed: only what this class opened is there to close."""
        self._kill_process()
        ServerProcess._close(self)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, and SIGKILL if the process is still there `timeout` s later."""
        try:
            self.terminate(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def _close(self) -> None:
        """Release what the process held open here (subclasses add their clients)."""
        self._log.close()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def start_seqserve(
    repository: Path,
    name: str,
    *extra: str,
    cwd: Path = REPO_ROOT,
    log_dir: Path = LOG_DIR,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """`seqserve serve` as the benchmarks run it: warnings only, in <log_dir>/bench-<name>-<port>.log."""
    port = free_port()
    command = serve_command(repository, "--log-level", "WARNING", *extra, port=port)
    return ServerProcess(command, log_dir / f"bench-{name}-{port}.log", cwd=cwd, env=env)


def start_echo(name: str) -> ServerProcess:
    """The no-op floor (bench/echo_server.py) on a free port."""
    port = free_port()
    command = [sys.executable, "-m", "bench.echo_server", "--port", str(port)]
    return ServerProcess(command, LOG_DIR / f"bench-{name}-{port}.log")
