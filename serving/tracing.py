"""Server traces (OpenTelemetry), configured by the standard OTEL_* variables and off unless they ask.

Off (no exporter asked for, see seqserve.tracing): `configure` returns None, nothing of OpenTelemetry
is imported, and the request path carries `NO_TRACE`, a constant: what it costs is one `if` per
request (inference.py) and one per batch (batcher.py). On: a TracerProvider
whose sampler the SDK reads from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default
parentbased_always_on: a caller's `traceparent` decides), its resource from OTEL_SERVICE_NAME /
OTEL_RESOURCE_ATTRIBUTES (service.name defaults to `seqserve`), and one BatchSpanProcessor per
exporter, flushed when the server stops.
Each process exports on its own, so every `--workers` worker gets a `service.instance.id` of its own
(the given one, or the host name, with the process id appended).

What a sampled request records, beside its SERVER span (serving.handlers.tracing):
- `seqserve.admission`: from the call's arrival to the protocol-neutral request path (the shutdown
  gate, the parse check, decoding the protocol's message);
- `seqserve.queue_wait`: the time in its model's queue;
- the batch that served it, `seqserve.batch` (a child of the first sampled request in it, with a span
  link to every sampled request it served, its size and padded length), and under it
  `seqserve.tokenize` and `seqserve.runtime`.
Its duration histograms carry the trace id as an OpenMetrics exemplar (`exemplar`).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seqserve import tracing as shared
from seqserve.tracing import (
    ADMISSION_SPAN,
    BATCH_REQUESTS,
    BATCH_SIZE,
    BATCH_SPAN,
    PADDED_LENGTH,
    QUEUE_WAIT_SPAN,
    RUNTIME_SPAN,
    TOKENIZE_SPAN,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, SpanContext, Tracer

    from serving.batcher import BatchTiming
    from serving.metrics import ModelLabels

DEFAULT_SERVICE_NAME = "seqserve"
INSTRUMENTATION_SCOPE = "seqserve.serving"
MODEL_NAME, MODEL_VERSION, MODEL_RUNTIME = "seqserve.model.name", "seqserve.model.version", "seqserve.runtime"
TEXT_COUNT = "seqserve.request.text_count"

Exemplar = dict[str, str]


@dataclass(frozen=True, slots=True)
class RequestTrace:
    """What the request path carries of a request's trace: its span (parent of the stage spans, target
    of the batch's link) and its histogram exemplar; both None when the request is not sampled."""

    context: SpanContext | None
    exemplar: Exemplar | None


NO_TRACE = RequestTrace(None, None)


def _epoch_ns(monotonic_s: float, now_monotonic_s: float, now_ns: int) -> int:
    """A time.monotonic()/perf_counter() reading (both CLOCK_MONOTONIC on Linux) as span time."""
    return now_ns - int((now_monotonic_s - monotonic_s) * 1e9)


def exemplar_of(context: SpanContext) -> Exemplar:
    """The ids as traceparent and trace viewers write them (opentelemetry.trace.format_trace_id)."""
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def _resource() -> Any:
    """Every process exports on its own: its service.instance.id is the given one (or the host
    name) with the process id appended, so `--workers` workers stay apart."""
    from opentelemetry.sdk.resources import OTELResourceDetector

    given = OTELResourceDetector().detect().attributes.get("service.instance.id") or socket.gethostname()
    return shared.resource(DEFAULT_SERVICE_NAME, {"service.instance.id": f"{given}-{os.getpid()}"})


class ServerTracing:
    """The tracer of one server process. Made by `configure`, only when tracing is on."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import context, propagate, trace  # once, not per call

        self._provider = provider
        self._context, self._propagate, self._trace = context, propagate, trace
        self._error = trace.Status(trace.StatusCode.ERROR)
        self.tracer: Tracer = provider.get_tracer(INSTRUMENTATION_SCOPE)

    def shutdown(self) -> None:
        """Export what is still buffered (within OTEL_BSP_EXPORT_TIMEOUT) and stop the exporters."""
        self._provider.shutdown()

    def server_span(self, name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]) -> Span:
        """A SERVER span continuing the caller's trace context (W3C `traceparent` in `headers`)."""
        return self.tracer.start_span(
            name, self._propagate.extract(headers), kind=self._trace.SpanKind.SERVER, attributes=attributes
        )

    def activate(self, span: Span) -> object | None:
        """Make a sampled `span` the current one (the request path finds it there); None for one that
        is not sampled, which has nothing to record and no children."""
        if not span.is_recording():
            return None
        return self._context.attach(self._trace.set_span_in_context(span))

    def finish(self, span: Span, token: object | None, error: bool) -> None:
        """End a span `activate` made current (marked as an error if the server failed the call)."""
        if token is None:
            return
        if error:
            span.set_status(self._error)
        span.end()
        self._context.detach(token)  # type: ignore[arg-type]

    def request(self, labels: ModelLabels, text_count: int) -> RequestTrace:
        """The running request's trace, once it reaches the request path; ends its admission span.
        On a stream (one span, many requests) only the first request records admission and names
        the model; every one gets its queue wait and its batch's link."""
        span = self._trace.get_current_span()
        context = span.get_span_context()
        if not context.trace_flags.sampled:
            return NO_TRACE
        started = getattr(span, "start_time", None)  # an SDK span's, in ns
        if started is not None and TEXT_COUNT not in (getattr(span, "attributes", None) or {}):
            span.set_attributes(
                {MODEL_NAME: labels.model, MODEL_VERSION: labels.version, MODEL_RUNTIME: labels.runtime,
                 TEXT_COUNT: text_count}
            )  # fmt: skip
            self.tracer.start_span(ADMISSION_SPAN, start_time=started).end()
        return RequestTrace(context, exemplar_of(context))

    def for_model(self, labels: ModelLabels) -> BatchTracing:
        return BatchTracing(self.tracer, labels)


class BatchTracing:
    """The spans of one model version's batches (serving.batcher)."""

    def __init__(self, tracer: Tracer, labels: ModelLabels) -> None:
        self._tracer = tracer
        self._attributes = {
            MODEL_NAME: labels.model,
            MODEL_VERSION: labels.version,
            MODEL_RUNTIME: labels.runtime,
        }

    def batch_ran(
        self, requests: Sequence[tuple[RequestTrace | None, float]], ids: Any, timing: BatchTiming
    ) -> Exemplar | None:
        """A batch that ran for `requests` (their trace, time enqueued: perf_counter): when any of them
        is sampled, their queue waits and the batch's span (a child of the first sampled request,
        linked to each) with its tokenize and runtime stages, made from the times the batcher took;
        returns the batch's exemplar for its stage histograms (None when no request is sampled)."""
        traced = [(t, enqueued) for t, enqueued in requests if t is not None and t.context is not None]
        if not traced:
            return None
        from opentelemetry import trace

        now, now_ns = time.perf_counter(), time.time_ns()
        formed_ns = _epoch_ns(timing.formed, now, now_ns)
        for request_trace, enqueued in traced:
            parent = trace.set_span_in_context(trace.NonRecordingSpan(request_trace.context))  # type: ignore[arg-type]
            self._tracer.start_span(QUEUE_WAIT_SPAN, parent, start_time=_epoch_ns(enqueued, now, now_ns)).end(
                formed_ns
            )
        first = trace.set_span_in_context(trace.NonRecordingSpan(traced[0][0].context))  # type: ignore[arg-type]
        links = [trace.Link(request_trace.context) for request_trace, _ in traced]  # type: ignore[arg-type]
        attributes = {
            **self._attributes,
            BATCH_REQUESTS: len(requests),
            BATCH_SIZE: timing.items,
            PADDED_LENGTH: int(ids.shape[1]),
        }
        span = self._tracer.start_span(
            BATCH_SPAN, first, links=links, attributes=attributes, start_time=formed_ns
        )
        inside = trace.set_span_in_context(span)
        prepared_ns = _epoch_ns(timing.prepared, now, now_ns)
        self._tracer.start_span(TOKENIZE_SPAN, inside, start_time=formed_ns).end(prepared_ns)
        self._tracer.start_span(RUNTIME_SPAN, inside, start_time=_epoch_ns(timing.started, now, now_ns)).end(
            _epoch_ns(timing.ended, now, now_ns)
        )
        span.end(now_ns)
        return exemplar_of(span.get_span_context())


def configure() -> ServerTracing | None:
    """This process's tracing as the OTEL_* variables ask; None (and nothing imported) when off.
    Raises seqserve.tracing.TracingConfigError for an exporter or protocol it cannot use."""
    names = shared.exporter_names(os.environ)
    if not names:
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=_resource())
    for exporter in shared.span_exporters(os.environ, names):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return ServerTracing(provider)
