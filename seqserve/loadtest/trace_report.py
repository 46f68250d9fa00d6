"""The slowest sampled calls of a run, each with the server's own account of it, read from the spans
the server exported: its SERVER span (the child of the call's CLIENT span), that span's stage spans,
and the batch that served it (the `seqserve.batch` span linking to it) with its tokenize and runtime
spans. A call whose spans have not arrived is listed with its ids only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from seqserve.loadtest.runner import TracedCall
from seqserve.loadtest.trace_receiver import SPAN_KIND_SERVER, ReceivedSpan, TraceReceiver
from seqserve.tracing import (
    ADMISSION_SPAN,
    BATCH_REQUESTS,
    BATCH_SIZE,
    BATCH_SPAN,
    QUEUE_WAIT_SPAN,
    RUNTIME_SPAN,
    TOKENIZE_SPAN,
)

# breakdown column -> the span it is read from: of the request, or of its batch
REQUEST_STAGES = {"admission": ADMISSION_SPAN, "queue_wait": QUEUE_WAIT_SPAN}
BATCH_STAGES = {"tokenize": TOKENIZE_SPAN, "runtime": RUNTIME_SPAN}
STAGES = ("server", *REQUEST_STAGES, "batch", *BATCH_STAGES)
# The server's batch processor exports every 5 s by default (OTEL_BSP_SCHEDULE_DELAY).
SPANS_WAIT_S = 12.0


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


def _child_stages(
    parent: ReceivedSpan, stages: dict[str, str], spans: Sequence[ReceivedSpan]
) -> dict[str, float]:
    """stage -> ms of the spans named in `stages` that are children of `parent`."""
    found = {}
    for stage, name in stages.items():
        for span in spans:
            if (
                span.name == name
                and span.parent_span_id == parent.span_id
                and span.trace_id == parent.trace_id
            ):
                found[stage] = span.duration_s * 1e3
    return found


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
    stages = {"server": server.duration_s * 1e3, **_child_stages(server, REQUEST_STAGES, spans)}
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
        stages["batch"] = batch.duration_s * 1e3
        stages.update(_child_stages(batch, BATCH_STAGES, spans))
        size = int(batch.attributes.get(BATCH_SIZE, 0))
        requests = int(batch.attributes.get(BATCH_REQUESTS, 0))
    instance = str(server.resource.get("service.instance.id", ""))
    return CallBreakdown(call.trace_id, call.latency_s * 1e3, stages, size, requests, instance)


def fetch_breakdowns(
    receiver: TraceReceiver, calls: Sequence[TracedCall], wait_s: float = SPANS_WAIT_S
) -> list[CallBreakdown]:
    """Each call's breakdown, once every one is complete or `wait_s` has passed."""

    def all_complete(spans: list[ReceivedSpan]) -> bool:
        return all(breakdown(call, spans).complete for call in calls)

    spans = receiver.wait_for(all_complete, wait_s)
    return [breakdown(call, spans) for call in calls]
