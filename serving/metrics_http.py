"""/metrics over HTTP/1.0: one request per connection, answered and closed; all Prometheus needs.

Both the single server and the `--workers` supervisor serve /metrics with it. Standard library only
(http.server would do too, but it loads the email package, megabytes the supervisor does without).

Connection hygiene, so that slow or hostile clients cannot take /metrics down:
- a client has --metrics-head-timeout-s in all to finish its TLS handshake and send its request head (a
  deadline over the whole head, not per read: a client sending a byte now and then is cut off too);
  the handshake runs in the connection's own thread, never in the one accepting connections;
- at most --metrics-max-connections connections are served at once; one beyond it is closed at once.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from serving.settings import Settings
from serving.tls import server_context

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16384  # of a request head
WRITE_TIMEOUT_S = 10.0  # for the answer


# the Accept header -> (content type, body)
Scrape = Callable[[str], tuple[str, bytes]]


class _HeadTimeout(Exception):
    pass


def _accept(head: bytes) -> str:
    """The Accept header of a request head ("" without one): it chooses OpenMetrics or the text format."""
    for line in head.decode("latin-1").split("\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            return value.strip()
    return ""


def _read_head(sock: socket.socket, deadline: float) -> bytes | None:
    """The request head, up to its blank line; None if the client closed or sent too much."""
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _HeadTimeout
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise _HeadTimeout from None
        if not chunk or len(head) + len(chunk) > MAX_HEAD_BYTES:
            return None
        head += chunk
    return head


class MetricsHttpServer(socketserver.ThreadingTCPServer):
    """GET /metrics answers `scrape(accept)`, which gets the request's Accept header (OpenMetrics or
    the Prometheus text format) and returns (content type, body); anything else 404."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        scrape: Scrape,
        settings: Settings,
    ) -> None:
        self._scrape = scrape
        self._head_timeout_s = settings.metrics_head_timeout_s
        self._slots = threading.BoundedSemaphore(settings.metrics_max_connections)
        self._tls: ssl.SSLContext | None = server_context(settings)
        self.address_family = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)[0][0]
        super().__init__(address, socketserver.BaseRequestHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the cap: closed at once
            return
        try:
            super().process_request(request, client_address)  # type: ignore[arg-type]
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            self._answer(request)
        except (OSError, _HeadTimeout):  # the client's problem: its connection is closed
            pass
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def _answer(self, sock: socket.socket) -> None:
        deadline = time.monotonic() + self._head_timeout_s
        if self._tls is not None:
            sock.settimeout(self._head_timeout_s)
            try:
                sock = self._tls.wrap_socket(sock, server_side=True)
            except TimeoutError:
                raise _HeadTimeout from None
        head = _read_head(sock, deadline)
        if head is None:
            return
        request = head.split(b"\n", 1)[0].decode("latin-1").split()
        if len(request) >= 2 and request[0] == "GET" and request[1].split("?", 1)[0] == "/metrics":
            status = "200 OK"
            content_type, body = self._scrape(_accept(head))
        else:
            status, content_type, body = "404 Not Found", "text/plain", b"only /metrics is here\n"
        answer = f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        sock.settimeout(WRITE_TIMEOUT_S)
        sock.sendall(answer.encode() + b"Connection: close\r\n\r\n" + body)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def serve_metrics_http(address: tuple[str, int], settings: Settings, scrape: Scrape) -> MetricsHttpServer:
    """Listen on `address` and answer in a daemon thread, with the server's TLS settings (the same
    identity and client CA as every other port); `.shutdown()` stops it."""
    server = MetricsHttpServer(address, scrape, settings)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
