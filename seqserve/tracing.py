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
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

EXPORTERS_VARIABLE = "OTEL_TRACES_EXPORTER"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
KNOWN_EXPORTERS = ("otlp", "console")
TRACEPARENT = "traceparent"


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
