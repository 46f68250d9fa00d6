"""`--workers N`: N server processes on one gRPC port, and the small supervisor that starts them.

Python gRPC serves every RPC of a process on one event loop, so one process uses about one core. With
N workers the kernel spreads incoming connections over N listening sockets bound to the same port
(SO_REUSEPORT). Each worker is a whole server: it loads the repository, batches, polls for hot reload,
and drains on shutdown. The supervisor holds no gRPC object, model or runtime:

- it reserves the gRPC and REST ports first (bound with SO_REUSEPORT, never listening; with port 0 the
  kernel picks it), so every worker binds the same ones;
- it spawns each worker as a fresh interpreter (`python -m serving.worker`, its settings sent over a
  pipe), never a fork, so gRPC's rule against forking a process with gRPC state holds whatever the
  supervisor imported; and so that the supervisor stays small (whole server ≈ N workers' memory), it
  imports no gRPC, no metrics library and not multiprocessing's process machinery;
- each worker reports when its models are loaded; health turns SERVING in no worker before every
  worker is ready, and only then the server is announced (one ready line, with every pid);
- it serves the one /metrics, merging every worker's exposition at scrape time (serving.metrics_merge);
- SIGTERM/SIGINT are passed on to every worker, which drains as a single server does (a second signal
  stops them at once); the supervisor exits when all have, 0 if every one stopped gracefully;
- a worker that exits on its own (a crash, a failed start-up) stops the others gracefully and the
  supervisor exits 1, so that the orchestrator restarts the whole server: a server with fewer workers
  than asked would look healthy and serve less. A worker whose supervisor is gone drains and exits.

Workers run in their own process group, so a Ctrl-C in a terminal reaches only the supervisor, which
passes it on once.

The worker's end of the pipes is serving/worker.py (`python -m serving.worker CONTROL_FD METRICS_FD`,
run by the supervisor only); this module imports no asyncio, so the supervisor stays small.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait

from serving.announce import announce
from serving.control import OPENMETRICS, READY, SERVE
from serving.metrics_merge import CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE, merge, wants_openmetrics
from serving.settings import Settings
from serving.tls import server_context

log = logging.getLogger(__name__)

METRICS_TIMEOUT_S = 5.0
MAX_LINE, MAX_HEADERS = 8192, 100  # of a /metrics request


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT and never listening: the port every worker
    binds too, chosen by the kernel when `port` is 0. Kept open while the workers run."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    reservation = socket.socket(family, kind, proto)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind(sockaddr)
    return reservation


@dataclasses.dataclass
class Worker:
    process: subprocess.Popen
    control: Connection  # closes (EOF) when the worker exits
    metrics: Connection
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    info: dict | None = None


def start_worker(settings: Settings) -> Worker:
    control, control_child = Pipe()
    metrics, metrics_child = Pipe()
    fds = (control_child.fileno(), metrics_child.fileno())
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.worker", *map(str, fds)], pass_fds=fds, process_group=0
    )
    control_child.close()
    metrics_child.close()
    control.send(settings)
    return Worker(process, control, metrics)


def scrape(workers: list[Worker], openmetrics: bool = False) -> str:
    """Every running worker's exposition, merged (in OpenMetrics, with exemplars, if asked)."""
    texts = []
    for worker in workers:
        with worker.lock, contextlib.suppress(EOFError, OSError):  # an exited worker counts no more
            worker.metrics.send_bytes(OPENMETRICS if openmetrics else b"")
            if worker.metrics.poll(METRICS_TIMEOUT_S):
                texts.append(worker.metrics.recv_bytes().decode())
    return merge(texts)


class _MetricsRequest(socketserver.StreamRequestHandler):
    """GET /metrics over HTTP/1.0, answered and closed: all Prometheus needs. http.server would do too,
    but it loads the email and ssl packages, megabytes the supervisor otherwise does without."""

    timeout = 10  # a client that stalls mid-request holds only its own thread, and not for long
    server: _MetricsServer

    def handle(self) -> None:
        request = self.rfile.readline(MAX_LINE).decode("latin-1").split()
        accept = ""  # the only header that changes the answer: OpenMetrics or the text format
        for _ in range(MAX_HEADERS):
            header = self.rfile.readline(MAX_LINE)
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "accept":
                accept = value.strip()
        if len(request) >= 2 and request[0] == "GET" and request[1].split("?", 1)[0] == "/metrics":
            openmetrics = wants_openmetrics(accept)
            content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else CONTENT_TYPE
            status, body = "200 OK", scrape(self.server.workers, openmetrics).encode()
        else:
            status, content_type, body = "404 Not Found", "text/plain", b"only /metrics is here\n"
        head = f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        self.wfile.write(head.encode() + b"Connection: close\r\n\r\n" + body)


class _MetricsServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], workers: list[Worker]) -> None:
        self.workers = workers
        super().__init__(address, _MetricsRequest)


def serve_metrics(settings: Settings, workers: list[Worker]) -> _MetricsServer:
    """/metrics of the whole server, in a daemon thread, with the server's TLS settings."""
    server = _MetricsServer((settings.effective_metrics_host, settings.metrics_port), workers)
    context = server_context(settings)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers: list[Worker] = []
        self.signals = 0
        self.failed = False

    def run(self) -> int:
        reservation = reserve_port(self.settings.host, self.settings.port)
        rest_reservation = reserve_port(self.settings.host, self.settings.rest_port)
        port, rest_port = reservation.getsockname()[1], rest_reservation.getsockname()[1]
        http = serve_metrics(self.settings, self.workers)
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        signal.set_wakeup_fd(wake_write.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)  # counted from the wake-up socket
        worker_settings = dataclasses.replace(self.settings, port=port, rest_port=rest_port)
        self.workers.extend(start_worker(worker_settings) for _ in range(self.settings.workers))
        try:
            self._supervise(wake_read, port, rest_port, http.server_address[1])
        finally:
            http.shutdown()
            reservation.close()
            rest_reservation.close()
        return 1 if self.failed or any(w.process.returncode != 0 for w in self.workers) else 0

    def _supervise(self, wake: socket.socket, port: int, rest_port: int, metrics_port: int) -> None:
        announced = False
        while any(w.process.returncode is None for w in self.workers):
            running = [w for w in self.workers if w.process.returncode is None]
            for ready in wait([wake, *(w.control for w in running)]):
                if ready is wake:
                    self._signalled(len(wake.recv(64)))
                    continue
                worker = next(w for w in running if ready is w.control)
                self._message(worker)
            if not announced and not self.signals and all(w.info for w in self.workers):
                for w in self.workers:
                    w.control.send(SERVE)
                models = self.workers[0].info["models"]  # type: ignore[index]
                pids = [w.process.pid for w in self.workers]
                announce(self.settings, port, rest_port, metrics_port, models, pids)
                announced = True

    def _message(self, worker: Worker) -> None:
        try:
            kind, info = worker.control.recv()
        except (EOFError, OSError):  # the worker has exited
            worker.process.wait()
            self._exited(worker)
            return
        if kind == READY:
            worker.info = info

    def _signalled(self, count: int) -> None:
        for _ in range(count):
            self.signals += 1
            log.info("passing the signal on to every worker", extra={"signals": self.signals})
            self._signal_workers()

    def _exited(self, worker: Worker) -> None:
        if self.signals:
            return
        log.error(
            "a worker exited; stopping the others",
            extra={"pid": worker.process.pid, "exit_code": worker.process.returncode},
        )
        self.failed = True
        self.signals = 1
        self._signal_workers()

    def _signal_workers(self) -> None:
        for w in self.workers:
            if w.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.process.pid, signal.SIGTERM)


def supervise(settings: Settings) -> int:
    return Supervisor(settings).run()
