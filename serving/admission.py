"""The shutdown gate every request passes, whatever its protocol.

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


class AdmissionGate:
    def __init__(self) -> None:
        self._closed = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active(self) -> int:
        """Requests inside the gate now."""
        return self._active

    def close(self) -> None:
        """Refuse every new request from now on."""
        self._closed = True

    def admit(self) -> bool:
        """Let one request in (False once the gate is closed); every admitted request must `leave`."""
        if self._closed:
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
