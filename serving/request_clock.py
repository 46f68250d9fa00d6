"""How long a request takes on the server, from its call reaching the handler to its answer built.

`seqserve_request_duration_seconds` should cover what the server spends on a request, decoding and
encoding included: a body that is slow to parse must show in it. The protocol-neutral request path
(serving.inference) knows the model and the outcome but not the wire; the transports' wrappers
(serving.handlers.grpc_guard for unary gRPC calls, the HTTP middleware for REST) know when a call
arrived and when its answer is ready. So a wrapper starts a `RequestClock` in a context variable, the
request path hands it the duration histogram of each successful classification (a Compare has one per
model), and the wrapper observes them all once the answer is built. Where no clock runs (a stream's
messages, in-process callers), the request path observes its own span at once.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from typing import Any

_CLOCK: ContextVar[RequestClock | None] = ContextVar("seqserve_request_clock", default=None)


class RequestClock:
    __slots__ = ("pending", "started")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.pending: list[tuple[Any, Any]] = []  # (histogram child, exemplar) to observe at the end


def start() -> Token[RequestClock | None]:
    """A clock for the call being handled, from now."""
    return _CLOCK.set(RequestClock())


def stop(token: Token[RequestClock | None]) -> None:
    """The call's answer is built: observe its duration in every histogram it was handed."""
    clock = _CLOCK.get()
    _CLOCK.reset(token)
    if clock is not None and clock.pending:
        elapsed = time.perf_counter() - clock.started
        for histogram, exemplar in clock.pending:
            histogram.observe(elapsed, exemplar)


def observe_when_answered(histogram: Any, exemplar: Any, elapsed_so_far: float) -> None:
    """A successful request's duration: at the end of its call when a clock runs, else `elapsed_so_far`
    now."""
    clock = _CLOCK.get()
    if clock is None:
        histogram.observe(elapsed_so_far, exemplar)
    else:
        clock.pending.append((histogram, exemplar))
