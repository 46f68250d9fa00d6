"""Server traces (OpenTelemetry), configured by the standard OTEL_* variables and off unless they ask.

Off (no exporter asked for, see seqserve.tracing): `configure` returns None, nothing of OpenTelemetry
is imported, and the request path carries `NO_TRACE`, a constant: what it costs is one `if` per
request (inference.py) and one per batch (batcher.py).

On: each call is first decided in plain Python (serving.trace_sampling: the caller's `traceparent`,
the sampler OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG name, default parentbased_always_on). A call
that is not sampled goes on untouched: no span object, no OpenTelemetry call, no exemplar, and the
request path finds `NO_TRACE`. A sampled one gets its SERVER span from the SDK (serving.handlers.tracing),
with the trace id it was decided on (the SDK's own sampler is always_on: it is asked only for spans
already decided on), exported through a BatchSpanProcessor per exporter, flushed when the server
stops. The resource comes from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
(service.name defaults to `seqserve`); each process exports on its own, so every `--workers` worker
gets a `service.instance.id` of its own (the given one, or the host name, with the process id appended).

What a sampled request records, with as few objects as Jaeger needs to show every stage: its stages
are events on its spans (Jaeger's span logs), each at the stage's start with its duration
(`seqserve.stage.duration_ms`):
- on its SERVER span, `seqserve.admission` (from the call's arrival to the protocol-neutral request
  path: the shutdown gate, the parse check, decoding the protocol's message) and `seqserve.queue_wait`
  (the time in its model's queue);
- the batch that served it is a span, `seqserve.batch` (a child of the first sampled request in it,
  with a span link to every sampled request it served, its size and padded length), with its
  `seqserve.tokenize` and `seqserve.runtime` events.
Its duration histograms carry the trace id as an OpenMetrics exemplar (`exemplar`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import random
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from seqserve import tracing as shared
from seqserve.tracing import (
    ADMISSION,
    BATCH_REQUESTS,
    BATCH_SIZE,
    BATCH_SPAN,
    PADDED_LENGTH,
    QUEUE_WAIT,
    RUNTIME,
    STAGE_DURATION_MS,
    TOKENIZE,
)
from serving.trace_sampling import Sampled, TraceSampler, sampler_setting

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, SpanContext, Tracer

    from serving.metrics import ModelLabels

DEFAULT_SERVICE_NAME = "seqserve"
INSTRUMENTATION_SCOPE = "seqserve.serving"
MODEL_NAME, MODEL_VERSION, MODEL_RUNTIME = "seqserve.model.name", "seqserve.model.version", "seqserve.runtime"
TEXT_COUNT = "seqserve.request.text_count"
TRACESTATE_MAX_LENGTH = 512  # the SDK propagator's limit on the joined tracestate headers

Exemplar = dict[str, str]


@dataclass(frozen=True, slots=True)
class RequestTrace:
    """What the request path carries of a call's trace: its SERVER span (where its stages are recorded,
    the batch's parent or link) and its histogram exemplar; both None when the call is not sampled."""

    span: Span | None
    exemplar: Exemplar | None


NO_TRACE = RequestTrace(None, None)
Entered = contextvars.Token[RequestTrace]  # what `finish` undoes of `enter`
# The running call's trace, set by serving.handlers.tracing around a sampled call's handler.
_current: contextvars.ContextVar[RequestTrace] = contextvars.ContextVar("call_trace", default=NO_TRACE)


def _epoch_ns(monotonic_s: float, now_monotonic_s: float, now_ns: int) -> int:
    """A time.monotonic()/perf_counter() reading (both CLOCK_MONOTONIC on Linux) as span time."""
    return now_ns - int((now_monotonic_s - monotonic_s) * 1e9)


def exemplar_of(context: SpanContext) -> Exemplar:
    """The ids as traceparent and trace viewers write them (opentelemetry.trace.format_trace_id)."""
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def _stage(span: Span, name: str, start_ns: int, end_ns: int) -> None:
    """A stage as an event on `span`: at its start, with its duration."""
    span.add_event(name, {STAGE_DURATION_MS: (end_ns - start_ns) / 1e6}, start_ns)


def _random_id(bits: int) -> int:
    while True:
        value = random.getrandbits(bits)
        if value:
            return value


class DecidedTraceIds:
    """The provider's id generator (the SDK's IdGenerator interface): a root span gets the trace id
    its call was sampled on, `next_trace_id`, set on the event loop just before the span starts.
    Span ids, and a trace id nobody decided on, are random as the SDK's RandomIdGenerator draws them."""

    def __init__(self) -> None:
        self.next_trace_id = 0

    def generate_trace_id(self) -> int:
        trace_id, self.next_trace_id = self.next_trace_id, 0
        return trace_id or _random_id(128)

    def generate_span_id(self) -> int:
        return _random_id(64)

    def is_trace_id_random(self) -> bool:
        """Every bit drawn uniformly (W3C random-trace-id flag), a decided id's low bits too."""
        return True


def _resource() -> Any:
    """Every process exports on its own: its service.instance.id is the given one (or the host
    name) with the process id appended, so `--workers` workers stay apart."""
    from opentelemetry.sdk.resources import OTELResourceDetector

    given = OTELResourceDetector().detect().attributes.get("service.instance.id") or socket.gethostname()
    return shared.resource(DEFAULT_SERVICE_NAME, {"service.instance.id": f"{given}-{os.getpid()}"})


class ServerTracing:
    """The tracer of one server process. Made by `configure`, only when tracing is on.

    Per call, the handlers call `decide(traceparent)` first (serving.trace_sampling.TraceSampler): None
    means the call is not traced and nothing else is done; a `Sampled` call gets `start`, `enter` and
    `finish`."""

    def __init__(self, provider: TracerProvider, sampler: TraceSampler, trace_ids: DecidedTraceIds) -> None:
        from opentelemetry import context, trace  # once, not per call
        from opentelemetry.trace.span import TraceState

        self._provider = provider
        self._trace_ids = trace_ids
        self.decide = sampler.decide
        self._trace, self._trace_state = trace, TraceState
        self._root = context.Context()  # an empty context: a span started in it has no parent
        self._error = trace.Status(trace.StatusCode.ERROR)
        self.tracer: Tracer = provider.get_tracer(INSTRUMENTATION_SCOPE)
        self.batches = BatchTracing(self.tracer)  # every model's batches

    def shutdown(self) -> None:
        """Export what is still buffered (within OTEL_BSP_EXPORT_TIMEOUT) and stop the exporters."""
        self._provider.shutdown()

    def start(
        self, sampled: Sampled, name: str, attributes: Mapping[str, Any], tracestate: Sequence[str] = ()
    ) -> RequestTrace:
        """The SERVER span of a sampled call, from now: a child of the caller's span (its `tracestate`
        headers kept, as the SDK's propagator keeps them), or a root with the decided trace id."""
        trace, parent = self._trace, sampled.parent
        if parent is None:
            self._trace_ids.next_trace_id = sampled.trace_id
            context = self._root
        else:
            state = None
            if tracestate and sum(map(len, tracestate)) + len(tracestate) - 1 <= TRACESTATE_MAX_LENGTH:
                state = self._trace_state.from_header(list(tracestate))
            caller = trace.SpanContext(
                parent.trace_id, parent.span_id, True, trace.TraceFlags(parent.flags), state
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(caller), self._root)
        span = self.tracer.start_span(name, context, kind=trace.SpanKind.SERVER, attributes=attributes)
        return RequestTrace(span, exemplar_of(span.get_span_context()))

    def enter(self, call: RequestTrace) -> Entered:
        """Make `call` the running one: the request path finds it (`request`)."""
        return _current.set(call)

    def finish(self, call: RequestTrace, entered: Entered, error: bool, status: tuple[str, int]) -> None:
        """End the call's span with its `status` attribute, marked as an error if the server failed it."""
        span = call.span
        assert span is not None
        span.set_attribute(*status)
        if error:
            span.set_status(self._error)
        span.end()
        # A stream's generator that the event loop closes (its client gone) runs in another context,
        # where there is nothing to undo.
        with contextlib.suppress(ValueError):
            _current.reset(entered)

    def request(self, labels: ModelLabels, text_count: int) -> RequestTrace:
        """The running call's trace, once a request of it reaches the request path (NO_TRACE when the
        call is not sampled). On a stream (one span, many requests) only the first request records
        admission and names the model; every one gets its queue wait and its batch's link."""
        call = _current.get()
        span = call.span
        if span is not None and TEXT_COUNT not in span.attributes:  # type: ignore[attr-defined]
            span.set_attributes(
                {MODEL_NAME: labels.model, MODEL_VERSION: labels.version, MODEL_RUNTIME: labels.runtime,
                 TEXT_COUNT: text_count}
            )  # fmt: skip
            started: int = span.start_time  # type: ignore[attr-defined]  # an SDK span's, in ns
            _stage(span, ADMISSION, started, time.time_ns())
        return call


class BatchTimes(Protocol):
    """perf_counter readings of a batch (serving.batcher.BatchTiming, not imported: the batcher
    imports this module)."""

    formed: float
    prepared: float
    started: float
    ended: float
    items: int


class BatchTracing:
    """The spans of batches (serving.batcher). The model is not named again on a batch's span: the
    requests' spans name it, its parent among them."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry import context, trace

        self._tracer = tracer
        self._trace = trace
        self._root = context.Context()

    def batch_ran(
        self, requests: Sequence[tuple[RequestTrace | None, float]], ids: Any, timing: BatchTimes
    ) -> Exemplar | None:
        """A batch that ran for `requests` (their trace, time enqueued: perf_counter): when any of them
        is sampled, their queue waits (events on their spans) and the batch's span (a child of the
        first sampled request, linked to each) with its tokenize and runtime events, made from the
        times the batcher took; returns the batch's exemplar for its stage histograms (None when no
        request is sampled)."""
        traced = [(t.span, enqueued) for t, enqueued in requests if t is not None and t.span is not None]
        if not traced:
            return None
        trace = self._trace
        now, now_ns = time.perf_counter(), time.time_ns()
        formed_ns = _epoch_ns(timing.formed, now, now_ns)
        for span, enqueued in traced:
            if span.is_recording():  # not when its call ended (cancelled) while the batch ran
                _stage(span, QUEUE_WAIT, _epoch_ns(enqueued, now, now_ns), formed_ns)
        batch = self._tracer.start_span(
            BATCH_SPAN,
            trace.set_span_in_context(traced[0][0], self._root),
            links=[trace.Link(span.get_span_context()) for span, _ in traced],
            attributes={BATCH_REQUESTS: len(requests), BATCH_SIZE: timing.items, PADDED_LENGTH: ids.shape[1]},
            start_time=formed_ns,
        )
        _stage(batch, TOKENIZE, formed_ns, _epoch_ns(timing.prepared, now, now_ns))
        _stage(batch, RUNTIME, _epoch_ns(timing.started, now, now_ns), _epoch_ns(timing.ended, now, now_ns))
        batch.end(now_ns)
        return exemplar_of(batch.get_span_context())


def check_environment(environ: Mapping[str, str]) -> None:
    """Raise TracingConfigError if the OTEL_* variables ask for tracing this server cannot do (at
    start-up, before anything else happens); the sampler's variables count only when tracing is on."""
    shared.check_environment(environ)
    if shared.exporter_names(environ):
        sampler_setting(environ)


def configure() -> ServerTracing | None:
    """This process's tracing as the OTEL_* variables ask; None (and nothing imported) when off.
    Raises seqserve.tracing.TracingConfigError for an exporter, protocol or sampler it cannot use."""
    names = shared.exporter_names(os.environ)
    if not names:
        return None
    setting = sampler_setting(os.environ)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    trace_ids = DecidedTraceIds()
    provider = TracerProvider(
        sampler=ALWAYS_ON,  # every span it is asked for is one decided on: a sampled call's, or its batch's
        resource=_resource(),
        id_generator=trace_ids,  # type: ignore[arg-type]  # the IdGenerator interface, without importing it
    )
    for exporter in shared.span_exporters(os.environ, names):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return ServerTracing(provider, TraceSampler(setting), trace_ids)
