"""The slowest sampled calls of a run, each with the server's own account of it, read from the spans
the server exported: its SERVER span (the child of the call's CLIENT span) with its stage events, and
the batch that served it (the `seqserve.batch` span linking to it) with the batch's stage events. A
call whose spans have not arrived is listed with its ids only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from seqserve.loadtest.runner import TracedCall
from seqserve.loadtest.trace_receiver import SPAN_KIND_SERVER, ReceivedSpan, TraceReceiver
from seqserve.tracing import (
    ADMISSION,
    BATCH_REQUESTS,
    BATCH_SIZE,
    BATCH_SPAN,
    QUEUE_WAIT,
    RUNTIME,
    STAGE_DURATION_MS,
    TOKENIZE,
)

# breakdown column -> the stage event it is read from: of the request's span, or of its batch's
REQUEST_STAGES = {"admission": ADMISSION, "queue_wait": QUEUE_WAIT}
BATCH_STAGES = {"tokenize": TOKENIZE, "runtime": RUNTIME}
STAGES = ("server", *REQUEST_STAGES, "batch", *BATCH_STAGES)
# The server's batch processor exports every 5 s by default (OTEL_BSP_SCHEDULE_DELAY).
SPANS_WAIT_S = 12.0


@dataclass(frozen=True)
class Stage:
    """A stage the server recorded as an event on one of its spans, in span time (ns)."""

    name: str
    start_ns: int
    end_ns: int

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def stages(span: ReceivedSpan) -> list[Stage]:
    """The stage events of `span`, in the order they were recorded (a stream's span has a queue wait
    per request)."""
    return [
        Stage(event.name, event.time_ns, event.time_ns + round(event.attributes[STAGE_DURATION_MS] * 1e6))
        for event in span.events
        if STAGE_DURATION_MS in event.attributes
    ]


@dataclass(frozen=True)
class CallBreakdown:
    trace_id: str
    client_ms: float
    stages_ms: dict[str, float] = field(default_factory=dict)  # STAGES found; NaN-free
    batch_size: int = 0  # texts in the batch that served the call (0: its batch span is missing)
    batch_requests: int = 0
    server_instance: str = ""  # the server process that answered (service.instance.id)

    @property
    def complete(self) -> bool:
        return set(self.stages_ms) == set(STAGES)


def slowest(calls: Sequence[TracedCall], count: int) -> list[TracedCall]:
    return sorted(calls, key=lambda call: call.latency_s, reverse=True)[:count]


def _stages_ms(span: ReceivedSpan, columns: dict[str, str]) -> dict[str, float]:
    """column -> ms of the stage events of `span` that `columns` names."""
    recorded = {stage.name: stage.duration_ms for stage in stages(span)}
    return {column: recorded[name] for column, name in columns.items() if name in recorded}


def breakdown(call: TracedCall, spans: Sequence[ReceivedSpan]) -> CallBreakdown:
    server = next(
        (
            s
            for s in spans
            if s.trace_id == call.trace_id and s.parent_span_id == call.span_id and s.kind == SPAN_KIND_SERVER
        ),
        None,
    )
    if server is None:
        return CallBreakdown(call.trace_id, call.latency_s * 1e3)
    found = {"server": server.duration_s * 1e3, **_stages_ms(server, REQUEST_STAGES)}
    batch = next(
        (
            s
            for s in spans
            if s.name == BATCH_SPAN and any(link.span_id == server.span_id for link in s.links)
        ),
        None,
    )
    size = requests = 0
    if batch is not None:
        found["batch"] = batch.duration_s * 1e3
        found.update(_stages_ms(batch, BATCH_STAGES))
        size = int(batch.attributes.get(BATCH_SIZE, 0))
        requests = int(batch.attributes.get(BATCH_REQUESTS, 0))
    instance = str(server.resource.get("service.instance.id", ""))
    return CallBreakdown(call.trace_id, call.latency_s * 1e3, found, size, requests, instance)


def fetch_breakdowns(
    receiver: TraceReceiver, calls: Sequence[TracedCall], wait_s: float = SPANS_WAIT_S
) -> list[CallBreakdown]:
    """Each call's breakdown, once every one is complete or `wait_s` has passed."""

    def all_complete(spans: list[ReceivedSpan]) -> bool:
        return all(breakdown(call, spans).complete for call in calls)

    spans = receiver.wait_for(all_complete, wait_s)
    return [breakdown(call, spans) for call in calls]
