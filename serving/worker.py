"""The worker's end of `--workers N` (serving/supervisor.py is the supervisor's): a whole server whose
/metrics and readiness go through two pipes to the supervisor.

The control pipe is read on the worker's event loop, and the supervisor's heartbeat (PING) is answered
there too: a worker whose loop is blocked or stopped stops answering, and the supervisor replaces it.
/metrics requests are answered from a thread of their own, so a scrape never waits for the loop.

    python -m serving.worker CONTROL_FD METRICS_FD     (run by the supervisor only)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from serving.control import OPENMETRICS, PING, PONG, READY, SERVE
from serving.logs import configure_logging
from serving.server import serve
from serving.settings import Settings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)


class WorkerLink:
    """A worker's end of its two pipes to the supervisor: control messages, and metrics on request."""

    def __init__(self, control: Connection, metrics: Connection) -> None:
        self._control = control
        self._metrics = metrics
        self._go = asyncio.Event()
        self._stop = asyncio.Event()

    def serve_metrics(self, registry: CollectorRegistry) -> None:
        """Answer every request on the metrics pipe with this worker's exposition, in a daemon thread:
        OpenMetrics (exemplars included) when the request says OPENMETRICS, else the text format."""
        from prometheus_client import generate_latest
        from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

        def answer() -> None:
            with contextlib.suppress(EOFError, OSError):  # the supervisor is gone
                while True:
                    wanted = self._metrics.recv_bytes()
                    generate = generate_openmetrics if wanted == OPENMETRICS else generate_latest
                    self._metrics.send_bytes(generate(registry))

        threading.Thread(target=answer, name="metrics-link", daemon=True).start()

    def watch(self, stop: asyncio.Event) -> None:
        """Read control messages on the running loop. `stop` is the worker's shutdown: set here when
        the supervisor is gone, and it ends a wait in `ready`."""
        self._stop = stop
        asyncio.get_running_loop().add_reader(self._control.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            message = self._control.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self._control.fileno())
            log.warning("the supervisor is gone; shutting down")
            self._stop.set()
            return
        if message == PING:
            self._control.send((PONG, None))
        elif message == SERVE:
            self._go.set()

    async def ready(self, port: int, models: dict[str, list[int]]) -> bool:
        """Report this worker ready, then wait for SERVE (True) or the start of shutdown (False)."""
        self._control.send((READY, {"port": port, "models": models, "pid": os.getpid()}))
        waits = [asyncio.ensure_future(event.wait()) for event in (self._go, self._stop)]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        return self._go.is_set() and not self._stop.is_set()


def worker_main(control_fd: int, metrics_fd: int) -> int:
    """A spawned worker process: one whole server that reports to the supervisor."""
    control, metrics = Connection(control_fd), Connection(metrics_fd)
    settings: Settings = control.recv()
    configure_logging(settings.log_level, settings.log_format)
    return asyncio.run(serve(settings, WorkerLink(control, metrics)))


if __name__ == "__main__":
    sys.exit(worker_main(int(sys.argv[1]), int(sys.argv[2])))
