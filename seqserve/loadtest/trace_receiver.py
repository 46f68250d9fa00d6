"""An OTLP/gRPC trace receiver: the collector's TraceService (opentelemetry-proto), keeping every span
it is sent in memory.

`seqserve loadtest --trace-receiver` runs one and the server is pointed at it
(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT), so the load tester reads the server's own spans
of the calls it made without a collector in between; the tests use it the same way. It speaks the
protocol a collector speaks, so anything exporting OTLP/gRPC can send to it.

    python -m seqserve.loadtest.trace_receiver [--host 127.0.0.1] [--port 4317]
        on its own (bench/tracing_overhead.py runs one beside the servers it measures): prints
        `listening ENDPOINT`, and the spans and span events it received by name when SIGTERM or SIGINT
        ends it
"""

from __future__ import annotations

import argparse
import collections
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

SPAN_KIND_SERVER = trace_pb2.Span.SPAN_KIND_SERVER
SPAN_KIND_CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT


@dataclass(frozen=True)
class Link:
    trace_id: str  # hex, as in a traceparent header
    span_id: str


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    kind: int  # trace_pb2.Span.SpanKind
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    links: tuple[Link, ...]
    events: tuple[ReceivedEvent, ...]
    status_code: int  # trace_pb2.Status.StatusCode
    resource: dict[str, Any]

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def received_spans(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        links=tuple(Link(link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                        events=tuple(
                            ReceivedEvent(event.name, event.time_unix_nano, _attributes(event.attributes))
                            for event in span.events
                        ),
                        status_code=span.status.code,
                        resource=resource,
                    )
                )
    return spans


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Listens on `host:port` (0: a free port) in a thread pool of its own; `endpoint` is the URL to
    give an exporter. A context manager: stopped on leaving the block."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._spans: list[ReceivedSpan] = []
        self._arrived = threading.Condition()
        self._server = grpc.server(futures.ThreadPoolExecutor(2, thread_name_prefix="otlp-receiver"))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        self.host = host
        self._server.start()

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def Export(  # the protocol names it
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        spans = received_spans(request)
        with self._arrived:
            self._spans.extend(spans)
            self._arrived.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        with self._arrived:
            return list(self._spans)

    def wait_for(self, found: Callable[[list[ReceivedSpan]], bool], timeout: float) -> list[ReceivedSpan]:
        """Every span received once `found(spans)` holds, or when `timeout` seconds have passed."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not found(self._spans):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.wait(remaining)
            return list(self._spans)

    def stop(self) -> None:
        self._server.stop(None).wait()

    def __enter__(self) -> TraceReceiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An OTLP/gRPC trace receiver that counts what it gets.")
    parser.add_argument("--host", default="127.0.0.1", help="listen address [%(default)s]")
    parser.add_argument("--port", type=int, default=4317, help="port (0: any free one) [%(default)s]")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with TraceReceiver(args.host, args.port) as receiver:
        print(f"listening {receiver.endpoint}", flush=True)
        stop.wait()
        spans = receiver.spans()
    spans_by_name = collections.Counter(span.name for span in spans)
    events_by_name = collections.Counter(event.name for span in spans for event in span.events)
    print(f"received {_listed(spans_by_name, 'spans')}; {_listed(events_by_name, 'events')}")
    return 0


def _listed(counts: collections.Counter[str], what: str) -> str:
    return f"{sum(counts.values())} {what}: " + ", ".join(f"{n} {c}" for n, c in sorted(counts.items()))


if __name__ == "__main__":
    sys.exit(main())
