"""The admission gate every request passes, whatever its protocol: shut until the server serves, and
again when shutdown begins.

Until the models are loaded and health turns SERVING, every request is refused at once with
UNAVAILABLE / 503 ("not ready yet"), not answered NOT_FOUND for a model still loading: with
`--workers`, a replacement worker listens on the shared port while it loads, and the connections the
kernel hands it must hear a status a client retries.

When shutdown begins, the server closes the gate: from then on every new request is refused at once
("send it elsewhere": gRPC UNAVAILABLE, HTTP 503), while the requests already inside run to the end,
and `wait_idle` tells the server when the last one has left. Only then does it stop the transports,
so that no client sees a request cancelled half-way, which it could not tell from a lost one. The
gRPC interceptor (serving.handlers.grpc_guard) and the HTTP middleware (serving.http_server) share one
gate, so one drain covers every port.
"""

from __future__ import annotations

import asyncio

SHUTTING_DOWN = "the server is shutting down; send the request to another one"
STARTING = "the server is starting (its models are loading); retry, or send the request to another one"


class AdmissionGate:
    def __init__(self) -> None:
        self._open = False
        self._closed = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.closing = asyncio.Event()  # set by `close`: waits inside the gate (a body arriving) end

    @property
    def active(self) -> int:
        """Requests inside the gate now."""
        return self._active

    def open(self) -> None:
        """The server serves: admit requests (until `close`)."""
        self._open = True

    def close(self) -> None:
        """Refuse every new request from now on."""
        self._closed = True
        self.closing.set()

    @property
    def refusal(self) -> str:
        """Why a request is refused now."""
        return SHUTTING_DOWN if self._closed else STARTING

    def admit(self) -> bool:
        """Let one request in (False before `open` and after `close`); every admitted request must
        `leave`."""
        if self._closed or not self._open:
            return False
        self._active += 1
        self._idle.clear()
        return True

    def leave(self) -> None:
        self._active -= 1
        if self._active == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Until no admitted request is running."""
        await self._idle.wait()
