"""OpenTelemetry plumbing both sides share: which exporters the OTEL_* variables ask for, and W3C
`traceparent` in and out of a carrier (gRPC metadata, HTTP headers).

Traces are off unless asked for: OTEL_TRACES_EXPORTER names an exporter other than `none`, or an
OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, exporter
`otlp` then). OTEL_SDK_DISABLED=true turns them off whatever else is set. The exporters read their
own variables (endpoint, headers, TLS, timeout, compression), the SDK the sampler's and the batch
processor's. The OpenTelemetry packages are imported only when tracing is on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

EXPORTERS_VARIABLE = "OTEL_TRACES_EXPORTER"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
KNOWN_EXPORTERS = ("otlp", "console")
# The server's batch span and stages (serving.tracing records them, the load tester reads them back):
# each stage is an event at its start, with its duration, on the request's SERVER span (admission,
# queue wait) or on the batch's span (tokenize, runtime).
BATCH_SPAN = "seqserve.batch"
ADMISSION, QUEUE_WAIT = "seqserve.admission", "seqserve.queue_wait"
TOKENIZE, RUNTIME = "seqserve.tokenize", "seqserve.runtime"
STAGE_DURATION_MS = "seqserve.stage.duration_ms"
BATCH_SIZE, BATCH_REQUESTS = "seqserve.batch.size", "seqserve.batch.requests"
PADDED_LENGTH = "seqserve.batch.padded_length"


class TracingConfigError(ValueError):
    """An OTEL_* variable names an exporter or protocol this program cannot use."""


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The span exporters the environment asks for; empty = tracing off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    listed = environ.get(EXPORTERS_VARIABLE, "").strip().lower()
    if not listed:
        return ["otlp"] if any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES) else []
    names = [name.strip() for name in listed.split(",") if name.strip() and name.strip() != "none"]
    unknown = [name for name in names if name not in KNOWN_EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"{EXPORTERS_VARIABLE}={listed!r}: {', '.join(unknown)} unknown; use otlp, console or none"
        )
    return names


def check_environment(environ: Mapping[str, str]) -> None:
    """Raise TracingConfigError if the OTEL_* variables ask for what cannot be done (at start-up,
    before anything else happens)."""
    if "otlp" in exporter_names(environ):
        otlp_protocol(environ)


def otlp_protocol(environ: Mapping[str, str]) -> str:
    """grpc (the default, port 4317) or http/protobuf (port 4318)."""
    for variable in PROTOCOL_VARIABLES:
        value = environ.get(variable, "").strip()
        if value:
            if value not in OTLP_PROTOCOLS:
                raise TracingConfigError(f"{variable}={value!r}: use grpc or http/protobuf")
            return value
    return "grpc"


def span_exporters(environ: Mapping[str, str], names: Iterable[str]) -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif otlp_protocol(environ) == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as OTLPHttpSpanExporter,
            )

            exporters.append(OTLPHttpSpanExporter())
    return exporters


def traceparent_of(span: Span) -> list[tuple[str, str]]:
    """The headers (W3C trace context, as OTEL_PROPAGATORS configures) that make `span` the parent of
    the call they go with, as (key, value) pairs: gRPC metadata or HTTP headers."""
    from opentelemetry import propagate, trace

    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return list(carrier.items())


def resource(default_service_name: str, attributes: Mapping[str, str] | None = None) -> Resource:
    """The SDK's resource (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME) over `attributes`, with
    `default_service_name` unless the environment names the service."""
    from opentelemetry.sdk.resources import Resource

    created = Resource.create(dict(attributes or {}))
    if str(created.attributes.get("service.name", "")).startswith("unknown_service"):
        created = created.merge(Resource({"service.name": default_service_name}))
    return created


def otlp_grpc_exporter(endpoint: str) -> SpanExporter:
    """An OTLP/gRPC exporter to `endpoint` (http:// = plaintext), whatever the OTEL_* variables say."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))


class ClientTracing:
    """A client's own tracer: one CLIENT span per call, a `ratio` of them sampled (the `traceparent`
    it sends says which, and a server sampling parent-based follows), batched to `exporters`."""

    def __init__(self, service_name: str, ratio: float, exporters: Iterable[SpanExporter]) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

        self._provider = TracerProvider(sampler=TraceIdRatioBased(ratio), resource=resource(service_name))
        for exporter in exporters:
            self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer(service_name)

    def start_call(self, name: str, attributes: Mapping[str, str | int]) -> Span:
        from opentelemetry.trace import SpanKind

        return self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)

    def shutdown(self) -> None:
        """Export the spans still buffered."""
        self._provider.shutdown()


def trace_ids(span: Span) -> tuple[str, str] | None:
    """(trace id, span id) in hex of a sampled span; None for one that is not."""
    from opentelemetry import trace

    context = span.get_span_context()
    if not context.trace_flags.sampled:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)
