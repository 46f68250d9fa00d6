"""`--workers N`: N server processes on one gRPC port, and the small supervisor that keeps them running.

Python gRPC serves every RPC of a process on one event loop, so one process uses about one core. With
N workers the kernel spreads incoming connections over N listening sockets bound to the same port
(SO_REUSEPORT). Each worker is a whole server: it loads the repository, batches, polls for hot reload,
and drains on shutdown. The supervisor is a process manager in the manner of gunicorn's arbiter; it
holds no gRPC object, model or runtime:

- it reserves the gRPC and REST ports first (bound with SO_REUSEPORT, never listening; with port 0 the
  kernel picks it), so every worker binds the same ones;
- it spawns each worker as a fresh interpreter (`python -m serving.worker`, its settings sent over a
  pipe), never a fork, so gRPC's rule against forking a process with gRPC state holds whatever the
  supervisor imported; and so that the supervisor stays small (whole server ≈ N workers' memory), it
  imports no gRPC, no asyncio, no metrics library and not multiprocessing's process machinery;
- each worker reports when its models are loaded; at start-up health turns SERVING in no worker before
  every worker is ready, and only then the server is announced (one ready line, with every pid);
- a worker that exits on its own (a crash, kill -9, the OOM killer, a failed start) is replaced while
  the others go on serving. Replacements of one worker slot back off exponentially (0.5 s doubling up
  to 10 s, back to 0.5 s once a replacement has served for 30 s). A replacement loads the models and
  is told to SERVE as soon as it is ready. More than --worker-max-restarts restarts within
  --worker-restart-window-s is a crash loop: the supervisor stops the other workers and exits 1, with a
  log line saying so, for the orchestrator to see;
- heartbeat: each ready worker is pinged over its control pipe and answers from its event loop; one
  that does not answer within --worker-timeout-s (a blocked loop, SIGSTOP) is killed (SIGKILL) and
  replaced, since the kernel keeps handing it new connections it never serves;
- a worker that has not reported READY within --worker-load-timeout-s of its start (a load that
  never ends: a hung file system, a runtime stuck in its set-up) is killed and replaced the same
  way: its loop may answer pings all along, so the heartbeat alone would never catch it;
- with --worker-max-rss-mib, a worker whose resident memory grows beyond it is recycled: its
  replacement starts at once, and only once it serves is the old one sent SIGTERM to drain;
- it serves the one /metrics (serving.metrics_http), merging every worker's exposition at scrape time
  (serving.metrics_merge), plus its own `seqserve_workers{state}` and
  `seqserve_worker_restarts_total{reason}`. A worker that does not answer a scrape within 1 s counts
  with its last answer's counters (and is skipped until it answers), so a hung worker never holds
  /metrics up; a worker that is gone leaves its counts as an offset, so no counter goes backwards;
- SIGTERM/SIGINT are passed on to every worker, which drains as a single server does (a second signal
  stops them at once); the supervisor exits when all have, 0 if every one stopped gracefully. A worker
  whose supervisor is gone drains and exits.

Readiness while a worker is missing: every worker that serves answers health and readiness itself
(SERVING), connections reach only workers that listen, and the log says the server is degraded until
every slot serves again.

Workers run in their own process group, so a Ctrl-C in a terminal reaches only the supervisor, which
passes it on once.

The worker's end of the pipes is serving/worker.py (`python -m serving.worker CONTROL_FD METRICS_FD`,
run by the supervisor only).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing import Pipe
from multiprocessing.connection import Connection, wait

from serving.announce import announce
from serving.control import OPENMETRICS, PING, PONG, READY, SERVE
from serving.metrics_http import MetricsHttpServer, serve_metrics_http
from serving.metrics_merge import (
    CONTENT_TYPE,
    EOF,
    OPENMETRICS_CONTENT_TYPE,
    Answer,
    WorkerTotals,
    supervisor_exposition,
    wants_openmetrics,
)
from serving.settings import Settings

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 1.0  # per worker; one that does not answer is left out of the scrape
BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 10.0  # between replacements of one worker slot, doubling
BACKOFF_RESET_S = 30.0  # a replacement serving this long resets its slot's backoff
TICK_S = 0.1  # how often timers (replacements, heartbeats) are looked at
STATES = ("ready", "starting", "draining")
REASONS = ("exit", "timeout", "rss")
CRASH_REASONS = frozenset({"exit", "timeout"})  # what counts towards --worker-max-restarts


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT and never listening: the port every worker
    binds too, chosen by the kernel when `port` is 0. Kept open while the workers run."""
    family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    reservation = socket.socket(family, kind, proto)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind(sockaddr)
    return reservation


def resident_mib(pid: int) -> float | None:
    """The resident memory of a process in MiB (Linux /proc); None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclasses.dataclass
class Worker:
    slot: int
    serial: int  # unique among every worker this supervisor starts (pids may be reused)
    process: subprocess.Popen
    control: Connection  # closes (EOF) when the worker exits
    metrics: Connection
    started: float  # time.monotonic()
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    info: dict | None = None  # its READY report
    serving_since: float | None = None
    ping_sent: float | None = None  # the heartbeat waiting for its answer
    last_pong: float = 0.0
    unanswered_scrapes: int = 0  # their answers are read (and dropped) before the next scrape
    kill_reason: str | None = None  # "timeout" once the supervisor killed it
    retiring: bool = False  # being replaced for its memory; drains once its replacement serves
    draining: bool = False  # sent SIGTERM

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def state(self) -> str:
        if self.draining:
            return "draining"
        return "ready" if self.serving_since is not None else "starting"

    def exposition(self, openmetrics: bool) -> str | None:
        """Its metrics (in OpenMetrics if asked), or None if it does not answer within SCRAPE_TIMEOUT_S
        (or has exited)."""
        if not self.lock.acquire(timeout=SCRAPE_TIMEOUT_S):
            return None
        try:
            while self.unanswered_scrapes and self.metrics.poll(0):  # late answers to earlier scrapes
                self.metrics.recv_bytes()
                self.unanswered_scrapes -= 1
            if self.unanswered_scrapes:
                return None  # still not answering: skipped without waiting
            self.metrics.send_bytes(OPENMETRICS if openmetrics else b"")
            if self.metrics.poll(SCRAPE_TIMEOUT_S):
                return self.metrics.recv_bytes().decode()
            self.unanswered_scrapes += 1
            return None
        except (EOFError, OSError):  # it has exited
            return None
        finally:
            self.lock.release()


_serials = itertools.count()


def start_worker(settings: Settings, slot: int) -> Worker:
    control, control_child = Pipe()
    metrics, metrics_child = Pipe()
    fds = (control_child.fileno(), metrics_child.fileno())
    process = subprocess.Popen(
        [sys.executable, "-m", "serving.worker", *map(str, fds)], pass_fds=fds, process_group=0
    )
    control_child.close()
    metrics_child.close()
    control.send(settings)
    return Worker(slot, next(_serials), process, control, metrics, time.monotonic())


@dataclasses.dataclass
class Slot:
    """One of the N worker places: the backoff of its replacements."""

    backoff_s: float = BACKOFF_START_S
    restart_at: float | None = None  # a replacement is due then


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_settings = settings
        self.workers: list[Worker] = []
        self.slots = [Slot() for _ in range(settings.workers)]
        self.restarts = dict.fromkeys(REASONS, 0)
        self.crash_times: collections.deque[float] = collections.deque()
        self.heartbeat_s = min(1.0, settings.worker_timeout_s / 4)
        self.signals = 0
        self.failed = False  # a crash loop
        self.unclean = False  # a worker did not stop gracefully on shutdown
        self.announced = False
        self.degraded = False
        self.totals = WorkerTotals()  # what /metrics has counted, kept across worker replacements

    def run(self) -> int:
        reservation = reserve_port(self.settings.host, self.settings.port)
        rest_reservation = reserve_port(self.settings.host, self.settings.rest_port)
        port, rest_port = reservation.getsockname()[1], rest_reservation.getsockname()[1]
        http = serve_metrics_http(
            (self.settings.effective_metrics_host, self.settings.metrics_port),
            self.settings,
            self.scrape,
        )
        wake_read, wake_write = socket.socketpair()
        wake_read.setblocking(False)
        wake_write.setblocking(False)
        signal.set_wakeup_fd(wake_write.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)  # counted from the wake-up socket
        self.worker_settings = dataclasses.replace(self.settings, port=port, rest_port=rest_port)
        self.workers.extend(start_worker(self.worker_settings, slot) for slot in range(len(self.slots)))
        try:
            self._supervise(wake_read, port, rest_port, http)
        finally:
            http.shutdown()
            reservation.close()
            rest_reservation.close()
        return 1 if self.failed or self.unclean else 0

    @property
    def stopping(self) -> bool:
        return bool(self.signals) or self.failed

    def scrape(self, accept: str) -> tuple[str, bytes]:
        """/metrics: every answering worker's exposition merged, and the supervisor's own families; in
        OpenMetrics (with exemplars) when the scraper's Accept header asks for it."""
        openmetrics = wants_openmetrics(accept)
        workers = list(self.workers)
        answers = [
            Answer(worker.serial, worker.exposition(openmetrics), worker.state == "ready")
            for worker in workers
        ]
        states = collections.Counter(worker.state for worker in workers)
        own = supervisor_exposition({state: states[state] for state in STATES}, self.restarts, openmetrics)
        merged = self.totals.merge(answers, openmetrics).removesuffix(EOF + "\n")
        if openmetrics:
            return OPENMETRICS_CONTENT_TYPE, (merged + own + EOF + "\n").encode()
        return CONTENT_TYPE, (merged + own).encode()

    def _supervise(self, wake: socket.socket, port: int, rest_port: int, http: MetricsHttpServer) -> None:
        while self.workers or not self.stopping:
            for ready in wait([wake, *(w.control for w in self.workers)], TICK_S):
                if ready is wake:
                    self._signalled(len(wake.recv(64)))
                    continue
                worker = next((w for w in self.workers if ready is w.control), None)
                if worker is not None:
                    self._message(worker)
            now = time.monotonic()
            self._timers(now)
            if not self.announced and not self.stopping and self._every_slot_ready():
                for worker in self.workers:
                    self._serve(worker, now)
                models = self.workers[0].info["models"]  # type: ignore[index]
                announce(self.settings, port, rest_port, http.port, models, [w.pid for w in self.workers])
                self.announced = True

    def _every_slot_ready(self) -> bool:
        ready = {w.slot for w in self.workers if w.info is not None}
        return len(ready) == len(self.slots)

    def _message(self, worker: Worker) -> None:
        try:
            kind, info = worker.control.recv()
        except (EOFError, OSError):  # the worker has exited
            self._exited(worker)
            return
        now = time.monotonic()
        if kind == PONG:
            worker.ping_sent, worker.last_pong = None, now
            self._check_memory(worker, now)
        elif kind == READY:
            worker.info, worker.last_pong = info, now
            log.info(
                "worker ready",
                extra={"pid": worker.pid, "slot": worker.slot, "start_s": round(now - worker.started, 3)},
            )
            if self.announced and not self.stopping:
                self._serve(worker, now)

    def _serve(self, worker: Worker, now: float) -> None:
        with contextlib.suppress(OSError):
            worker.control.send(SERVE)
        worker.serving_since = now
        for old in self.workers:
            if old.slot == worker.slot and old.retiring and not old.draining:
                log.info("replacement serves; draining the recycled worker", extra={"pid": old.pid})
                self._terminate(old)
        if self.degraded and self._serving() == len(self.slots):
            self.degraded = False
            log.info("every worker serves again", extra={"workers": len(self.slots)})

    def _serving(self) -> int:
        return sum(1 for w in self.workers if w.state == "ready")

    def _timers(self, now: float) -> None:
        for index, slot in enumerate(self.slots):
            if slot.restart_at is not None and now >= slot.restart_at and not self.stopping:
                slot.restart_at = None
                worker = start_worker(self.worker_settings, index)
                self.workers.append(worker)
                log.info("replacement worker started", extra={"pid": worker.pid, "slot": index})
        for worker in self.workers:
            if worker.serving_since is not None and now - worker.serving_since >= BACKOFF_RESET_S:
                self.slots[worker.slot].backoff_s = BACKOFF_START_S
            if worker.draining or worker.kill_reason:
                continue
            if worker.info is None:
                if now - worker.started > self.settings.worker_load_timeout_s:
                    self._kill(
                        worker,
                        "worker did not finish loading within --worker-load-timeout-s; killing it",
                        worker_load_timeout_s=self.settings.worker_load_timeout_s,
                    )
                continue
            if worker.ping_sent is None:
                if now - worker.last_pong >= self.heartbeat_s:
                    with contextlib.suppress(OSError):
                        worker.control.send(PING)
                    worker.ping_sent = now
            elif now - worker.ping_sent > self.settings.worker_timeout_s:
                self._kill(
                    worker,
                    "worker did not answer its heartbeat; killing it",
                    worker_timeout_s=self.settings.worker_timeout_s,
                )

    def _kill(self, worker: Worker, why: str, **limit: float) -> None:
        """SIGKILL a worker that hangs; it is replaced when its exit is seen (restart reason timeout)."""
        log.error(why, extra={"pid": worker.pid, **limit})
        worker.kill_reason = "timeout"
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGKILL)

    def _check_memory(self, worker: Worker, now: float) -> None:
        limit = self.settings.worker_max_rss_mib
        if not limit or worker.state != "ready" or worker.retiring or self.stopping:
            return
        rss = resident_mib(worker.pid)
        if rss is None or rss <= limit:
            return
        log.warning(
            "worker above --worker-max-rss-mib; starting its replacement",
            extra={"pid": worker.pid, "rss_mib": round(rss, 1), "worker_max_rss_mib": limit},
        )
        worker.retiring = True
        self.restarts["rss"] += 1
        self.workers.append(start_worker(self.worker_settings, worker.slot))

    def _exited(self, worker: Worker) -> None:
        try:
            worker.process.wait(10)
        except subprocess.TimeoutExpired:  # closed its pipe yet lives on: make sure
            worker.process.kill()
            worker.process.wait()
        worker.control.close()
        self.workers.remove(worker)
        self.totals.departed(worker.serial)
        code = worker.process.returncode
        if self.stopping:
            self.unclean |= code != 0
            return
        if worker.draining:  # recycled for its memory, drained as asked
            return
        reason = worker.kill_reason or "exit"
        extra = {"pid": worker.pid, "exit_code": code, "reason": reason, "slot": worker.slot}
        if worker.retiring:  # its replacement is already starting
            log.warning("a recycled worker exited before its replacement was ready", extra=extra)
            return
        self.restarts[reason] += 1
        now = time.monotonic()
        self.crash_times.append(now)
        while self.crash_times[0] < now - self.settings.worker_restart_window_s:
            self.crash_times.popleft()
        if len(self.crash_times) > self.settings.worker_max_restarts:
            log.error(
                "crash loop: more than --worker-max-restarts worker restarts within "
                "--worker-restart-window-s; stopping the server",
                extra={
                    **extra,
                    "restarts": len(self.crash_times),
                    "worker_max_restarts": self.settings.worker_max_restarts,
                    "worker_restart_window_s": self.settings.worker_restart_window_s,
                },
            )
            self.failed = True
            self._signal_workers()
            return
        slot = self.slots[worker.slot]
        slot.restart_at = now + slot.backoff_s
        log.error("worker exited; replacing it", extra={**extra, "restart_in_s": slot.backoff_s})
        slot.backoff_s = min(2 * slot.backoff_s, BACKOFF_MAX_S)
        if self.announced:
            self.degraded = True
            log.warning(
                "serving degraded: fewer workers than --workers",
                extra={"serving": self._serving(), "workers": len(self.slots)},
            )

    def _signalled(self, count: int) -> None:
        for _ in range(count):
            self.signals += 1
            log.info("passing the signal on to every worker", extra={"signals": self.signals})
            self._signal_workers()

    def _signal_workers(self) -> None:
        for slot in self.slots:
            slot.restart_at = None
        for worker in self.workers:
            self._terminate(worker)

    def _terminate(self, worker: Worker) -> None:
        worker.draining = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)


def supervise(settings: Settings) -> int:
    return Supervisor(settings).run()
