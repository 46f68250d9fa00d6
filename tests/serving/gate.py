"""A gate on the slow model's runs, so that a test acts while a batch runs (or a model warms up) because
it knows the run has started and cannot end before it says so, not because it guessed how long a run
takes.

A server started with `Gate.env` runs tests/serving/gate_site/sitecustomize.py in every process
(`--workers` workers too), which makes this module its ONNX runtime module (`load` here): every run
of the slow model (tests/serving/slow_model.py) first connects to the gate's Unix socket, says it
started, and waits for one byte back. On the test's side, `Gate` accepts those connections: while it
is open it releases each at once (a server starting up warms the model up); after `hold()` it keeps
them, and `next_run()` hands the test each held run in turn, to `release()` when it is done acting.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqserve.v1 import model_config_pb2
from serving.runtimes import Runtime
from tests.serving.slow_model import SLOW_MODEL

GATE_ENV = "SEQSERVE_TEST_GATE"
SITE_DIR = Path(__file__).parent / "gate_site"
REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # how long a test waits for a run to start before it fails


# The server's side (the ONNX runtime module of a gated server's processes)


def load(version_dir: Path, config: model_config_pb2.ModelConfig, intra_op_threads: int) -> Runtime:
    """The ONNX runtime's `load`; the slow model's runtime comes back gated."""
    from serving.runtimes import onnx

    runtime = onnx.load(version_dir, config, intra_op_threads)
    return GatedRuntime(runtime, os.environ[GATE_ENV]) if config.name == SLOW_MODEL else runtime


class GatedRuntime:
    """The runtime, whose every run waits at the gate first."""

    def __init__(self, runtime: Runtime, address: str) -> None:
        self._runtime = runtime
        self._address = address
        self.name = runtime.name
        self.source = runtime.source
        self.fixed_sequence_length = runtime.fixed_sequence_length

    def run(self, ids: np.ndarray) -> np.ndarray:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(self._address)
            sock.sendall(f"{os.getpid()} {len(ids)}\n".encode())
            sock.recv(1)  # the release, or the test's end of the socket closing
        return self._runtime.run(ids)


# The test's side


@dataclass
class Run:
    """One run of the gated model, waiting at the gate."""

    pid: int  # the server process running it (a worker's, with --workers)
    rows: int  # the batch's texts (or an explanation's variants)
    _connection: socket.socket

    def release(self) -> None:
        """Let the run go on (again: nothing)."""
        if self._connection.fileno() == -1:
            return
        try:
            self._connection.sendall(b".")
        except OSError:
            pass  # the server went away meanwhile
        finally:
            self._connection.close()


class Gate:
    """The test's end of the gate (`with contextlib.closing(Gate())`: closing releases every held run)."""

    def __init__(self) -> None:
        # a short directory of its own: a Unix socket's path has at most 107 bytes
        self._directory = Path(tempfile.mkdtemp(prefix="seqserve-gate-"))
        self.address = str(self._directory / "gate.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.address)
        self._listener.listen(128)
        self._held: queue.Queue[Run] = queue.Queue()  # not yet handed to the test
        self._kept: list[Run] = []  # every run held since the gate last opened, handed out or not
        self._holding = False
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, name="gate", daemon=True)
        self._accepting.start()

    @property
    def env(self) -> dict[str, str]:
        """The variables a server needs to have its slow model gated here (for ServerProcess's `env`)."""
        path = [str(SITE_DIR), str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {GATE_ENV: self.address, "PYTHONPATH": os.pathsep.join(path)}

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            with connection.makefile("rb") as lines:
                pid, rows = lines.readline().split()
            run = Run(int(pid), int(rows), connection)
            with self._lock:
                if self._holding:
                    self._kept.append(run)
                    self._held.put(run)
                    continue
            run.release()

    def hold(self) -> None:
        """From now on every run waits at the gate until the test releases it."""
        with self._lock:
            self._holding = True

    def open(self) -> None:
        """Release every held run (those handed to the test too), and let runs through from now on."""
        with self._lock:
            self._holding = False
            kept, self._kept = self._kept, []
            self._held = queue.Queue()
        for run in kept:
            run.release()

    def next_run(self, timeout: float = WAIT_S) -> Run:
        """The next run held at the gate (in the order they arrived)."""
        try:
            return self._held.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no run of {SLOW_MODEL} reached the gate within {timeout} s") from None

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        self._accepting.join(5)
        self.open()
        shutil.rmtree(self._directory, ignore_errors=True)
